"""``lrc-app {superres,color,style} IN OUT``: run one app on one image, compiled by lrc.

    lrc-app superres photo.png photo_x2.png          # x2 super resolution (pruned model)
    lrc-app color old.jpg colored.png                # colour a (grey or colour) photo
    lrc-app style in.png styled.png --dense          # the dense model instead of the pruned one

The model is compiled for the image's size (sides padded up to a multiple of 8 for color, 4 for
style) and the compiled model is cached per app, checkpoint and size in ``--cache-dir``
(default ``$LRC_APP_CACHE`` or ``~/.cache/lrc-app``), so the second image of a size runs
without compiling. The input is never overwritten; the output is written atomically and an
existing output is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "read_image", "write_image", "AppError", "INPUT_FORMATS", "OUTPUT_FORMATS"]

# PIL format name -> what we call it. Other formats PIL can read (GIF, ICO, PPM, ...) are refused.
INPUT_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP", "TIFF": "TIFF", "WEBP": "WebP"}
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".webp": "WEBP"}
# Leading bytes of the formats we accept: a file that starts like one but fails to decode is
# "corrupt", anything else PIL cannot identify is "not a supported image".
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")
# Largest input accepted: compile time and memory grow with the side.
MAX_PIXELS = 4096 * 4096


class AppError(Exception):
    """A user-facing error: printed as ``lrc-app: error: ...`` with exit status 2."""


def _looks_like_supported(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def read_image(path) -> "np.ndarray":  # noqa: F821
    """HxWx3 uint8 RGB; AppError naming the file and the problem otherwise."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise AppError(f"input image '{p}' does not exist")
    if p.is_dir():
        raise AppError(f"input '{p}' is a directory, not an image file")
    if not os.access(p, os.R_OK):
        raise AppError(f"input image '{p}' is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise AppError(f"input image '{p}' is empty (0 bytes)")
    supported = ", ".join(sorted(set(INPUT_FORMATS.values())))
    try:
        with Image.open(p) as im:
            fmt = im.format
            if fmt not in INPUT_FORMATS:
                raise AppError(f"input image '{p}' is {fmt}, which is not supported; use {supported}")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Composite onto white: dropping alpha would expose arbitrary hidden colours.
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except AppError:
        raise
    except UnidentifiedImageError:
        if _looks_like_supported(p):
            raise AppError(f"input image '{p}' is corrupt: its header is an image's, "
                           "but it cannot be decoded") from None
        raise AppError(f"input '{p}' is not an image in a supported format ({supported})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / damaged data
        raise AppError(f"input image '{p}' is corrupt or truncated: {e}") from None
    except Image.DecompressionBombError as e:
        raise AppError(f"input image '{p}' is too large: {e}") from None
    h, w = rgb.shape[:2]
    if h * w > MAX_PIXELS:
        raise AppError(f"input image '{p}' is {w}x{h}; at most {MAX_PIXELS} pixels are supported")
    if min(h, w) < 2:
        raise AppError(f"input image '{p}' is {w}x{h}; it needs at least 2 pixels per side")
    return rgb


def check_output(inp, out, force: bool) -> Path:
    """Validate OUT before any work: never the input, existing only with --force, known suffix."""
    i, o = Path(inp), Path(out)
    if o.suffix.lower() not in OUTPUT_FORMATS:
        raise AppError(f"output '{o}': unsupported extension '{o.suffix}'; use one of "
                       f"{', '.join(sorted(OUTPUT_FORMATS))}")
    same = os.path.abspath(i) == os.path.abspath(o) or os.path.realpath(i) == os.path.realpath(o)
    if not same and o.exists() and i.exists():
        try:
            same = os.path.samefile(i, o)  # hard links, bind mounts
        except OSError:
            pass
    if same:
        raise AppError(f"output '{o}' is the input image; refusing to overwrite the input")
    if o.is_dir():
        raise AppError(f"output '{o}' is a directory")
    if o.exists() and not force:
        raise AppError(f"output '{o}' exists; pass --force to replace it")
    parent = o.parent if str(o.parent) else Path(".")
    if not parent.is_dir():
        raise AppError(f"output folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise AppError(f"output folder '{parent}' is not writable")
    return o


def write_image(rgb, out) -> None:
    """Write atomically: a temporary file in the same folder, then os.replace."""
    from PIL import Image

    o = Path(out)
    fmt = OUTPUT_FORMATS[o.suffix.lower()]
    fd, tmp = tempfile.mkstemp(prefix=f".{o.name}.", suffix=".tmp", dir=str(o.parent) or ".")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
            Image.fromarray(rgb).save(f, format=fmt, **kw)
        os.replace(tmp, o)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_parser() -> argparse.ArgumentParser:
    from .inference import APPS

    p = argparse.ArgumentParser(prog="lrc-app", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("app", choices=APPS)
    p.add_argument("input", help="PNG, JPEG, BMP, TIFF or WebP image")
    p.add_argument("output", help="output image (.png, .jpg, .bmp, .tif, .webp)")
    p.add_argument("--target", default="host", choices=("host", "arm64"),
                   help="lrc target (default host)")
    p.add_argument("--dense", action="store_true", help="use the dense checkpoint, not the pruned one")
    p.add_argument("--checkpoint", metavar="PT", help="use this checkpoint file instead")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--cache-dir", metavar="DIR", help="compiled-model cache (default ~/.cache/lrc-app)")
    p.add_argument("--no-cache", action="store_true", help="compile without reading or writing the cache")
    p.add_argument("--torch", action="store_true", help="run the PyTorch model instead of compiling (reference)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for pre/post-processing")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def run(args) -> Path:
    out = check_output(args.input, args.output, args.force)
    rgb = read_image(args.input)

    import torch

    from . import inference as I

    torch.set_num_threads(args.threads)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        ckpt = Path(args.checkpoint) if args.checkpoint else I.checkpoint_path(args.app, args.dense)
        model = I.load_app(args.app, args.dense, ckpt)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        raise AppError(f"checkpoint: {e}") from None
    x, ctx = I.preprocess(args.app, rgb)
    t0 = time.perf_counter()
    if args.torch:
        with torch.no_grad():
            y = model(x)
        how = "torch"
    else:
        cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else I.default_cache_dir()
        try:
            cm, how = I.compile_cached(model, x, args.target, cache, I.checkpoint_key(args.app, ckpt), log)
        except NotImplementedError as e:
            raise AppError(f"cannot compile for target '{args.target}': {e}") from None
        t1 = time.perf_counter()
        try:
            y = torch.from_numpy(cm(x.numpy()))
        except OSError as e:  # e.g. an arm64 artifact on an x86 host
            raise AppError(f"the {args.target} build cannot run on this machine: {e}") from None
        how = f"lrc {args.target} ({how} in {t1 - t0:.1f} s, run {time.perf_counter() - t1:.2f} s)"
    write_image(I.postprocess(args.app, y, ctx), out)
    log(f"{args.app}: {args.input} ({rgb.shape[1]}x{rgb.shape[0]}) -> {out} "
        f"[{'dense' if args.dense else 'pruned'}, {how}]")
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except AppError as e:
        print(f"lrc-app: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
