def test_release_candidate(assert_robust, candidate, pgd):  # type: ignore[no-untyped-def]
    assert_robust(candidate, pgd, eps=4 / 255, min_acc=0.60, min_sensitivity=0.60)
