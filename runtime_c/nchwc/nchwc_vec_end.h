/* Undoes nchwc_vec.h (and the NB / NB_FN of the block just compiled). */
#undef NB
#undef NB_FN
#undef NB_SIMD
#undef VT
#undef VLOAD
#undef VSTORE
#undef VZERO
#undef VSET1
#undef VFMA
#undef VADD
#undef VSUB
#undef VDIV
#undef VMAX
#undef VMIN
