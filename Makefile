# Shortcuts; scripts/ holds the real commands (a fresh Debian has no make).
.PHONY: setup test lint demo generate bench
setup:
	bash scripts/setup
test:
	bash scripts/test
lint:
	.venv/bin/ruff check slowatch tests bench && .venv/bin/mypy
demo:
	bash scripts/demo
generate:
	.venv/bin/slowatch generate deploy/slos --out . --prometheusrule deploy/kubernetes/prometheusrule.yaml
bench:
	bash bench/run
