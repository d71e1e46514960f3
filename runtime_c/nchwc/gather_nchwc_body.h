/* Channel gather for one block size; included by gather_nchwc.c with NB, NB_FN(name),
 * NCHWC_CHANNEL_GATHER (the full name of the kernel it defines; undefined at the end) and
 * NB_SIMD defined (1: NB matches the build's vector registers). */

static void NB_FN(gather_tasks)(void* arg, int64_t t0, int64_t t1) {
    const gather_job* j = (const gather_job*)arg;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / j->Cb, ob = t % j->Cb, HW = j->HW;
        const int32_t e0 = j->first[ob], e1 = j->first[ob + 1];
        float* y = j->Y + t * HW * NB;
        const float* src[NB];
        int64_t s;
        int32_t e;
        /* e1 - e0 <= NB: every entry fills at least one lane (the emitter's tables) */
        for (e = e0; e < e1; ++e) {
            const int32_t* en = j->ent + (int64_t)e * GATHER_ENT(NB);
            src[e - e0] = j->X[en[0]] + (n * j->in_blocks[en[0]] + en[1]) * HW * NB;
        }
#if NB_SIMD && NB == 16
        {
            __m512i idx[NB];
            __mmask16 mask[NB];
            for (e = e0; e < e1; ++e) {
                const int32_t* en = j->ent + (int64_t)e * GATHER_ENT(NB);
                idx[e - e0] = _mm512_loadu_si512((const void*)(en + 3));
                mask[e - e0] = (__mmask16)en[2];
            }
            for (s = 0; s < HW; ++s) {
                __m512 v = _mm512_setzero_ps();
                for (e = 0; e < e1 - e0; ++e)
                    v = _mm512_mask_permutexvar_ps(v, mask[e], idx[e], _mm512_loadu_ps(src[e] + s * NB));
                _mm512_storeu_ps(y + s * NB, v);
            }
        }
#elif NB_SIMD && NB == 8
        {
            __m256i idx[NB];
            __m256 mask[NB];
            for (e = e0; e < e1; ++e) {
                const int32_t* en = j->ent + (int64_t)e * GATHER_ENT(NB);
                int32_t m[NB];
                int l;
                for (l = 0; l < NB; ++l) m[l] = (en[2] >> l) & 1 ? -1 : 0;
                idx[e - e0] = _mm256_loadu_si256((const __m256i*)(en + 3));
                mask[e - e0] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i*)m));
            }
            for (s = 0; s < HW; ++s) {
                __m256 v = _mm256_setzero_ps();
                for (e = 0; e < e1 - e0; ++e)
                    v = _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(_mm256_loadu_ps(src[e] + s * NB), idx[e]),
                                         mask[e]);
                _mm256_storeu_ps(y + s * NB, v);
            }
        }
#else
        {
            /* per output lane: its source vector and lane (-1: padding, zero) */
            int32_t which[NB], lane[NB];
            int l;
            for (l = 0; l < NB; ++l) which[l] = -1, lane[l] = 0;
            for (e = e0; e < e1; ++e) {
                const int32_t* en = j->ent + (int64_t)e * GATHER_ENT(NB);
                for (l = 0; l < NB; ++l)
                    if ((en[2] >> l) & 1) which[l] = e - e0, lane[l] = en[3 + l];
            }
            for (s = 0; s < HW; ++s)
                for (l = 0; l < NB; ++l)
                    y[s * NB + l] = which[l] < 0 ? 0.0f : src[which[l]][s * NB + lane[l]];
        }
#endif
    }
}

void NCHWC_CHANNEL_GATHER(int64_t N, int64_t HW, int64_t Cb, const float* const* X,
                          const int64_t* in_blocks, const int32_t* first, const int32_t* ent,
                          float* Y) {
    gather_job j;
    const int64_t total = N * Cb;
    j.N = N; j.HW = HW; j.Cb = Cb; j.X = X; j.in_blocks = in_blocks; j.first = first; j.ent = ent;
    j.Y = Y;
    onnxc_parallel_for(total, total > 1 && total * HW * NB >= NCHWC_GATHER_MIN_WORK,
                       NB_FN(gather_tasks), &j);
}

#undef NCHWC_CHANNEL_GATHER
