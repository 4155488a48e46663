# The two commands a newcomer needs:
#   make demo   set up .venv (once) and run the paper in miniature; prints where the report is
#   make test   set up .venv (once; plus Debian's chromium for the browser test), lint (ruff), type-check
#               (mypy on src/, settings in pyproject.toml) and run the tests
.PHONY: demo test setup setup-tests
setup:
	@bash scripts/setup.sh
setup-tests:
	@bash scripts/setup.sh --tests
demo: setup
	.venv/bin/sftscale demo
test: setup-tests
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -n 2 --dist loadfile
