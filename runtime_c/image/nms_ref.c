/* Portable C99 NonMaxSuppression (ONNX opsets 10-11), float32 boxes and scores, following the
 * spec's reference step by step in float32 (the arithmetic is rounded as it is there; the
 * build is ISO C99, so no multiply-add is contracted):
 *
 * per batch b and class c: the boxes whose score is > score_threshold (all of them without a
 * threshold) in descending score order, equal scores by ascending box index; a box is selected
 * unless its IoU with a box already selected for (b, c) is > iou_threshold (so IoU == threshold
 * keeps it), until max_output_boxes_per_class are selected.  Boxes are [y1, x1, y2, x2] with the
 * corners in either order (center_point_box = 0) or [x_center, y_center, width, height] (1).  A
 * pair with an empty intersection or a box of zero area is never suppressed.
 */
#include "onnxc_kernels.h"

static void nms_minmax(float a, float b, float* lo, float* hi) {
    if (a >= b) { *lo = b; *hi = a; } else { *lo = a; *hi = b; }
}

static float nms_max(float a, float b) { return b > a ? b : a; }
static float nms_min(float a, float b) { return b < a ? b : a; }

/* box1 is suppressed by box2 */
static int nms_suppress(const float* b1, const float* b2, int center, float iou_threshold) {
    float x1_min, x1_max, x2_min, x2_max, y1_min, y1_max, y2_min, y2_max;
    float ix_min, ix_max, iy_min, iy_max, inter, area1, area2, uni;
    if (!center) {
        nms_minmax(b1[1], b1[3], &x1_min, &x1_max);
        nms_minmax(b2[1], b2[3], &x2_min, &x2_max);
        ix_min = nms_max(x1_min, x2_min);
        ix_max = nms_min(x1_max, x2_max);
        if (ix_max <= ix_min) return 0;
        nms_minmax(b1[0], b1[2], &y1_min, &y1_max);
        nms_minmax(b2[0], b2[2], &y2_min, &y2_max);
    } else {
        const float w1 = b1[2] / 2.0f, h1 = b1[3] / 2.0f, w2 = b2[2] / 2.0f, h2 = b2[3] / 2.0f;
        x1_min = b1[0] - w1; x1_max = b1[0] + w1;
        x2_min = b2[0] - w2; x2_max = b2[0] + w2;
        ix_min = nms_max(x1_min, x2_min);
        ix_max = nms_min(x1_max, x2_max);
        if (ix_max <= ix_min) return 0;
        y1_min = b1[1] - h1; y1_max = b1[1] + h1;
        y2_min = b2[1] - h2; y2_max = b2[1] + h2;
    }
    iy_min = nms_max(y1_min, y2_min);
    iy_max = nms_min(y1_max, y2_max);
    if (iy_max <= iy_min) return 0;
    inter = (ix_max - ix_min) * (iy_max - iy_min);
    if (inter <= 0.0f) return 0;
    area1 = (x1_max - x1_min) * (y1_max - y1_min);
    area2 = (x2_max - x2_min) * (y2_max - y2_min);
    uni = area1 + area2;
    uni = uni - inter;
    if (area1 <= 0.0f || area2 <= 0.0f || uni <= 0.0f) return 0;
    return inter / uni > iou_threshold;
}

int64_t onnxc_f32_nms(const float* boxes, const float* scores, int64_t batches, int64_t classes, int64_t n,
                      int64_t max_per_class, float iou_threshold, int has_score_threshold, float score_threshold,
                      int center, int64_t* Y, int64_t cap, int64_t* scratch) {
    int64_t *cand = scratch, *tmp = scratch + n, *sel = scratch + 2 * n;
    int64_t b, c, total = 0;
    if (max_per_class < 0) max_per_class = 0;
    for (b = 0; b < batches; ++b)
        for (c = 0; c < classes; ++c) {
            const float* s = scores + (b * classes + c) * n;
            const float* bx = boxes + b * n * 4;
            int64_t m = 0, j, w, nsel = 0, *src = cand, *dst = tmp, *t;
            for (j = 0; j < n; ++j)
                if (!has_score_threshold || s[j] > score_threshold) cand[m++] = j;
            /* stable merge sort by descending score: equal scores keep ascending box index */
            for (w = 1; w < m; w *= 2) {
                int64_t lo;
                for (lo = 0; lo < m; lo += 2 * w) {
                    int64_t mid = lo + w < m ? lo + w : m, hi = lo + 2 * w < m ? lo + 2 * w : m;
                    int64_t x = lo, y = mid, d = lo;
                    while (x < mid && y < hi) dst[d++] = s[src[y]] > s[src[x]] ? src[y++] : src[x++];
                    while (x < mid) dst[d++] = src[x++];
                    while (y < hi) dst[d++] = src[y++];
                }
                t = src; src = dst; dst = t;
            }
            for (j = 0; j < m && nsel < max_per_class; ++j) {
                int64_t k, keep = 1;
                for (k = 0; k < nsel && keep; ++k)
                    if (nms_suppress(bx + src[j] * 4, bx + sel[k] * 4, center, iou_threshold)) keep = 0;
                if (!keep) continue;
                sel[nsel++] = src[j];
                if (total < cap) {
                    Y[total * 3] = b;
                    Y[total * 3 + 1] = c;
                    Y[total * 3 + 2] = src[j];
                }
                ++total;
            }
        }
    return total;
}
