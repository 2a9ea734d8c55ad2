"""`lr-opt`: an mlir-opt style driver for the lr dialect and its passes.

    lr-opt input.mlir --pass-pipeline='builtin.module(lr-fuse-conv-bn-act, lr-canonicalize)'
    lr-opt input.mlir --lr-fuse-conv-bn-act --lr-fuse-elementwise -o out.mlir
    lr-opt invalid.mlir --split-input-file --verify-diagnostics
"""
from __future__ import annotations

import argparse
import re
import sys

from torch_mlir import ir

from .atomic_write import write_atomic

SPLIT_MARKER = re.compile(r"^// -----\s*$", re.M)
EXPECT = re.compile(r"//\s*expected-(error|warning|note|remark)\s*(@[-+]?\d+|@above|@below)?\s*\{\{(.*?)\}\}")
LOC = re.compile(r'loc\("(?:-|[^"]*)":(\d+):(\d+)\)')


def _take_pass_flags(argv: list[str], names) -> tuple[list[str], list[str]]:
    """Pull `--<pass>` / `--<pass>=opt=v,opt2=w` out of argv, in order, as pipeline items.

    Done by hand because argparse would let `--pass input.mlir` swallow the file as the option value.
    """
    rest, items = [], []
    for a in argv:
        name, eq, val = a[2:].partition("=") if a.startswith("--") else ("", "", "")
        if name in names:
            items.append(name + ("{" + val.replace(",", " ") + "}" if eq and val else ""))
        else:
            rest.append(a)
    return rest, items


def _new_context() -> ir.Context:
    from torch_mlir.dialects import torch as torch_d

    from lrc.dialects import lr

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    lr.load(ctx)
    return ctx


def _make_parser():
    from lrc.transforms import PASSES

    p = argparse.ArgumentParser(prog="lr-opt", description="Run lr passes over MLIR files.")
    p.add_argument("input", nargs="?", default="-", help="input file (default: stdin)")
    p.add_argument("-o", dest="output", default="-", help="output file (default: stdout)")
    p.add_argument("--pass-pipeline", default=None, help="e.g. 'builtin.module(lr-fuse-conv-bn-act,canonicalize)'")
    p.add_argument("--split-input-file", action="store_true", help="process chunks separated by '// -----'")
    p.add_argument("--verify-diagnostics", action="store_true",
                   help="check diagnostics against 'expected-error {{...}}' comments")
    p.add_argument("--mlir-print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    p.add_argument("--mlir-elide-elementsattrs-if-larger", type=int, default=None,
                   help="print large weight attributes as dense_resource<__elided__>")
    p.add_argument("--list-passes", action="store_true", help="list the registered lr passes and exit")
    for name, cls in sorted(PASSES.items()):
        p.add_argument(f"--{name}", action="store_true",
                       help=cls.summary + (f" (options: --{name}={','.join(o + '=...' for o in cls.options)})"
                                           if cls.options else ""))
    return p


class _Diag:
    def __init__(self, severity: str, line: int | None, col: int | None, message: str):
        self.severity, self.line, self.col, self.message = severity, line, col, message


def _severity(d) -> str:
    s = str(d.severity).lower()
    for k in ("error", "warning", "note", "remark"):
        if k in s:
            return k
    return "error"


def _collect(diag, out: list, line_offset: int):
    m = LOC.search(str(diag.location))
    line, col = (int(m.group(1)) + line_offset, int(m.group(2))) if m else (None, None)
    out.append(_Diag(_severity(diag), line, col, str(diag.message)))
    for n in diag.notes:
        _collect(n, out, line_offset)


def _run_chunk(text: str, line_offset: int, args, pipeline: str | None, diags: list, print_after):
    """Parse + run; returns the printed module or None on failure (diagnostics are in `diags`)."""
    from lrc.transforms import PassError, run_pipeline

    ctx = _new_context()

    def handler(d):
        _collect(d, diags, line_offset)
        return True

    ctx.attach_diagnostic_handler(handler)
    with ctx:
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as e:
            for d in e.error_diagnostics:
                _collect(d, diags, line_offset)
            return None
        if pipeline:
            try:
                module = run_pipeline(module, pipeline, after_each=print_after)
            except ir.MLIRError as e:
                for d in e.error_diagnostics:
                    _collect(d, diags, line_offset)
                return None
            except (PassError, ValueError, NotImplementedError) as e:
                if not getattr(e, "reported", False):
                    diags.append(_Diag("error", None, None, str(e)))
                return None
        if not module.operation.verify():
            return None
        kwargs = {}
        if args.mlir_elide_elementsattrs_if_larger is not None:
            kwargs["large_elements_limit"] = args.mlir_elide_elementsattrs_if_larger
        return module.operation.get_asm(**kwargs)


def _expectations(text: str, line_offset: int):
    exp = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for m in EXPECT.finditer(line):
            kind, where, msg = m.group(1), m.group(2), m.group(3)
            target = i + 1
            if where in ("@above",):
                target -= 1
            elif where in ("@below",):
                target += 1
            elif where:
                target += int(where[1:])
            exp.append([kind, target + line_offset, msg, False])
    return exp


def _fmt(path: str, d: _Diag) -> str:
    where = f"{path}:{d.line}:{d.col}: " if d.line is not None else f"{path}: "
    return f"{where}{d.severity}: {d.message}"


def main(argv=None) -> int:
    from lrc.transforms import PASSES

    argv, flags = _take_pass_flags(list(sys.argv[1:] if argv is None else argv), PASSES)
    args = _make_parser().parse_args(argv)
    if args.list_passes:
        from lrc.transforms import PASSES

        for name, cls in sorted(PASSES.items()):
            print(f"{name}: {cls.summary}")
        return 0
    if args.pass_pipeline and flags:
        print("lr-opt: error: give either --pass-pipeline or pass flags, not both", file=sys.stderr)
        return 2
    pipeline = args.pass_pipeline or (",".join(flags) if flags else None)
    path = args.input
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()
    except OSError as e:
        print(f"lr-opt: error: cannot read '{path}': {e.strerror}", file=sys.stderr)
        return 1
    shown = "<stdin>" if path == "-" else path

    chunks = [(text, 0)]
    if args.split_input_file:
        chunks, offset = [], 0
        for part in SPLIT_MARKER.split(text):
            chunks.append((part, offset))
            offset += part.count("\n")

    def print_after(name, module):
        if args.mlir_print_ir_after_all:
            print(f"// -----// IR Dump After {name} //----- //", file=sys.stderr)
            print(module.operation.get_asm(large_elements_limit=16), file=sys.stderr)

    outputs, failed = [], False
    for chunk, offset in chunks:
        diags: list = []
        result = _run_chunk(chunk, offset, args, pipeline, diags, print_after)
        if args.verify_diagnostics:
            exp = _expectations(chunk, offset)
            for d in diags:
                hit = next((e for e in exp if not e[3] and e[0] == d.severity and e[1] == d.line and e[2] in d.message),
                           None)
                if hit:
                    hit[3] = True
                elif d.severity != "note":
                    print(f"{_fmt(shown, d)}\n  (unexpected {d.severity})", file=sys.stderr)
                    failed = True
            for kind, line, msg, seen in exp:
                if not seen:
                    print(f"{shown}:{line}: error: expected {kind} \"{msg}\" was not produced", file=sys.stderr)
                    failed = True
            if result is not None:
                outputs.append(result)
            continue
        for d in diags:
            print(_fmt(shown, d), file=sys.stderr)
        if result is None:
            failed = True
        else:
            outputs.append(result)
    out_text = "\n// -----\n".join(o.rstrip("\n") for o in outputs) + ("\n" if outputs else "")
    if args.output == "-":
        sys.stdout.write(out_text)
    else:
        write_atomic(args.output, out_text, prefix=".lr-opt-")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
