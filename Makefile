# The two commands a newcomer needs:
#   make demo   set up .venv (once) and run the paper in miniature; prints where the report is
#   make test   set up .venv (once) and run the test suite
.PHONY: demo test setup
setup:
	@bash scripts/setup.sh
demo: setup
	.venv/bin/sftscale demo
test: setup
	.venv/bin/python -m pytest -q
