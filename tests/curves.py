"""Layout invariance, asserted one way everywhere: a run's (loss, grad norm) per step
against the single-process run's.

Tolerances (fp32 on CPU): the loss to 1e-4 relative (DESIGN.md's layout-invariance bar).
The gradient norm to 1e-3: each layout adds fp32 partial sums in another order (TP splits
every matmul's reduction, DP and PP sum micro-batch gradients across ranks, SP and ZeRO-2/3
reduce-scatter), so the parameters differ by rounding after the first step and the
differences grow through Adam, whose division by sqrt(v) amplifies them where v is small.
The loss, a mean over every token of the global batch, averages them out; the norm is
dominated by a few of the largest gradients and does not. Measured on TP2 x DP2, tiny, 8
steps, seed 7: loss within 6e-7, norm within 1.2e-5 (step 5) and still growing; 1e-3 keeps
two orders of magnitude for the layouts with more reductions (PP x TP, SP, ZeRO-3, full
recomputation), while a wrong reduction (a missed or doubled gradient) moves the norm by
tens of percent.
"""

LOSS_RTOL, GRAD_NORM_RTOL = 1e-4, 1e-3


def assert_same_curve(got, expected, steps):
    assert len(got) == len(expected) == steps
    for step, ((loss, norm), (ref_loss, ref_norm)) in enumerate(zip(got, expected), 1):
        assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss), \
            f"step {step}: loss {loss} vs {ref_loss}"
        assert abs(norm - ref_norm) <= GRAD_NORM_RTOL * abs(ref_norm), \
            f"step {step}: norm {norm} vs {ref_norm}"
