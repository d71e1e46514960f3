/* Body of onnxc_maxpool and its 8-bit twins, included by pool_ref.c once per element type with
 * MAXPOOL_NAME, MAXPOOL_T and MAXPOOL_LOWEST (what an empty window gives) defined. The 8-bit ones
 * run a quantized MaxPool on the int8 tensor: exact, max commutes with a monotone DequantizeLinear. */
void MAXPOOL_NAME(const onnxc_pool_params* p, const MAXPOOL_T* X, MAXPOOL_T* Y, int64_t* indices) {
    onnxc_geom3 g;
    int64_t nc;
    const int64_t planes = p->N * p->C;
    int parallel;
    pool_geom_init(p, &g);
    parallel = planes > 1 && planes * g.out_sp * g.k[0] * g.k[1] * g.k[2] >= POOL_PARALLEL_MIN_WORK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (nc = 0; nc < planes; ++nc) {
        const MAXPOOL_T* x = X + nc * g.in_sp;
        MAXPOOL_T* y = Y + nc * g.out_sp;
        int64_t* ind = indices ? indices + nc * g.out_sp : NULL;
        int64_t od, oh, ow;
        for (od = 0; od < g.out[0]; ++od) {
            int64_t sd, lod, hid;
            onnxc_geom_window(&g, 0, od, &sd, &lod, &hid);
            for (oh = 0; oh < g.out[1]; ++oh) {
                int64_t sh, loh, hih;
                onnxc_geom_window(&g, 1, oh, &sh, &loh, &hih);
                for (ow = 0; ow < g.out[2]; ++ow) {
                    int64_t sw, low, hiw, td, th, tw;
                    int64_t best_i = -1;
                    MAXPOOL_T best = MAXPOOL_LOWEST;
                    onnxc_geom_window(&g, 2, ow, &sw, &low, &hiw);
                    for (td = lod; td < hid; ++td) {
                        const int64_t id = sd + td * g.d[0];
                        for (th = loh; th < hih; ++th) {
                            const int64_t ih = sh + th * g.d[1];
                            const int64_t row = (id * g.in[1] + ih) * g.in[2];
                            for (tw = low; tw < hiw; ++tw) {
                                const int64_t i = row + sw + tw * g.d[2];
                                const MAXPOOL_T v = x[i];
                                if (best_i < 0 || v > best) {
                                    best = v;
                                    best_i = i;
                                }
                            }
                        }
                    }
                    y[(od * g.out[1] + oh) * g.out[2] + ow] = best;
                    if (ind)
                        ind[(od * g.out[1] + oh) * g.out[2] + ow] =
                            best_i < 0 ? -1 : nc * g.in_sp + best_i;
                }
            }
        }
    }
}

#undef MAXPOOL_NAME
#undef MAXPOOL_T
#undef MAXPOOL_LOWEST
