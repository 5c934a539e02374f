"""The test harness: ground-truth traffic generator, real-process launchers, the promtool-test
writer and the demo. It lives beside the tests, not in the wheel: the wheel is the product."""
