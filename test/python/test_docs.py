"""The generated reference docs match the code (run `python -m lrc.tools.gen_docs` after changes)."""
import os

from lrc.tools import gen_docs

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_dialect_reference_is_current():
    assert open(os.path.join(ROOT, "docs", "dialect-ops.md")).read() == gen_docs.dialect_ops()


def test_pass_reference_is_current():
    assert open(os.path.join(ROOT, "docs", "passes-reference.md")).read() == gen_docs.passes()


def test_every_pass_has_a_lit_test():
    from lrc.transforms import PASSES

    names = {f[:-5] for _, _, files in os.walk(os.path.join(ROOT, "test", "lit")) for f in files if f.endswith(".mlir")}
    assert set(PASSES) <= names, sorted(set(PASSES) - names)
