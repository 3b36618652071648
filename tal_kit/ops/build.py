"""Build and load the NMS extension (csrc/): just in time on first use, or ahead of time with ``tal-kit build-ext``.

Variants: "cuda" (C++ and CUDA kernels; built wherever nvcc and a CUDA build of torch exist, with or without a GPU)
and "cpu" (C++ kernels only). The build is cached under ``$TAL_KIT_EXT_DIR`` (default ``~/.cache/tal_kit/ext``), in
a folder keyed by the torch, CUDA and Python versions, the CUDA architectures and a hash of the sources and flags;
torch's file lock keeps concurrent builds from colliding. A cached library is loaded directly (no ninja, so a
read-only cache of prebuilt extensions works, compiler or not) and only after its size and SHA-256 match the record
written when it was built: a truncated .so would otherwise kill the process with SIGBUS. A damaged build is rebuilt
with one warning, or skipped in a read-only cache. When nothing can be built, one warning says why and the
pure-torch NMS (tal_kit/ops/vectorized.py) takes over.

Environment: ``TAL_KIT_NMS_EXT`` = "auto" (default) | "cpu" (never compile CUDA) | "off" (never build: pure torch);
``TORCH_CUDA_ARCH_LIST`` (default: the visible GPUs, or DEFAULT_CUDA_ARCH_LIST when none is visible);
``CUDA_HOME`` (default: found from nvcc).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

from tal_kit.atomic import write_json_atomic

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_SOURCES = ("nms.cpp", "nms_cpu.cpp")
CUDA_SOURCES = CPU_SOURCES + ("nms_cuda.cu",)
HEADERS = ("nms.h", "nms_cpu.h", "nms_cuda.h")
# sm_80 code runs on every 8.x GPU (A100, A10, RTX 30/40), sm_90 on H100/H200; the PTX lets newer GPUs JIT it.
# Kept short: every architecture costs compile time (CI has two cores).
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"
# -ffp-contract=off / --fmad=false: no fused multiply-adds, so float32 results match the torch reference bit for bit.
CXX_FLAGS = ["-O3", "-pthread", "-ffp-contract=off"]
LD_FLAGS = ["-pthread"]
NVCC_FLAGS = ["-O3", "--fmad=false"]


def cache_root() -> Path:
    """Where builds are cached: $TAL_KIT_EXT_DIR, else $XDG_CACHE_HOME/tal_kit/ext, else ~/.cache/tal_kit/ext."""
    if os.environ.get("TAL_KIT_EXT_DIR"):
        return Path(os.environ["TAL_KIT_EXT_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tal_kit" / "ext"


def _nvcc_version(cuda_home: Path) -> str | None:
    try:
        out = subprocess.run([str(cuda_home / "bin" / "nvcc"), "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for token in out.replace(",", " ").split():
        if token.startswith("V") and token[1:2].isdigit():
            return token[1:]
    return None


def find_cuda_home() -> Path | None:
    """A CUDA toolkit folder holding bin/nvcc and include/cuda_runtime.h (torch's own guess can be wrong when nvcc
    on PATH is a wrapper script, e.g. /usr/local/bin/nvcc -> CUDA_HOME=/usr/local)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    if torch.version.cuda:
        candidates.append(f"/usr/local/cuda-{torch.version.cuda}")
    candidates.append("/usr/local/cuda")
    for candidate in candidates:
        if candidate and (Path(candidate) / "bin" / "nvcc").exists() \
                and (Path(candidate) / "include" / "cuda_runtime.h").exists():
            return Path(candidate)
    return None


def cuda_build_possible() -> tuple[bool, str]:
    """Whether the CUDA kernels can be compiled here, and why not."""
    if os.environ.get("TAL_KIT_NMS_EXT", "auto") == "cpu":
        return False, "TAL_KIT_NMS_EXT=cpu"
    if not torch.version.cuda:
        return False, f"torch {torch.__version__} is not a CUDA build"
    home = find_cuda_home()
    if home is None:
        return False, "no CUDA toolkit (nvcc) found; set CUDA_HOME to build the CUDA kernels"
    version = _nvcc_version(home)
    if version is None:
        return False, f"{home}/bin/nvcc does not run"
    if version.split(".")[0] != torch.version.cuda.split(".")[0]:
        return False, f"nvcc {version} ({home}) does not match torch's CUDA {torch.version.cuda}"
    return True, f"nvcc {version} at {home}"


def cuda_arch_list() -> str | None:
    """TORCH_CUDA_ARCH_LIST for the build: the user's, else None (torch targets the visible GPUs), else the default."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        archs = sorted({"{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())})
        return ";".join(archs)
    return DEFAULT_CUDA_ARCH_LIST


def build_key(variant: str) -> str:
    """Hash of the sources, the flags and the target architectures."""
    digest = hashlib.sha256()
    for name in sorted(set(CUDA_SOURCES + HEADERS)):
        digest.update(name.encode() + b"\0" + (CSRC / name).read_bytes() + b"\0")
    digest.update(json.dumps([variant, CXX_FLAGS, LD_FLAGS, NVCC_FLAGS,
                              cuda_arch_list() if variant == "cuda" else None]).encode())
    return digest.hexdigest()[:12]


def build_dir(variant: str) -> Path:
    """<cache>/torch<version>-<cuda>-py<X.Y>/<variant>-<hash>."""
    cuda = f"cu{torch.version.cuda}" if torch.version.cuda else "cpu"
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    versions = f"torch{torch.__version__.replace('+', '_')}-{cuda}-{python}"
    return cache_root() / versions / f"{variant}-{build_key(variant)}"


def _ensure_ninja_on_path() -> None:
    """torch's builder runs `ninja` from PATH; a virtualenv's ninja is not on it unless the venv is activated."""
    if shutil.which("ninja"):
        return
    folders = [str(Path(sys.executable).parent)]
    try:
        import ninja

        folders.insert(0, ninja.BIN_DIR)
    except ImportError:
        pass
    os.environ["PATH"] = os.pathsep.join(folders + [os.environ.get("PATH", "")])


def _compiler_problem() -> str | None:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH"
    _ensure_ninja_on_path()
    if shutil.which("ninja") is None:
        return "ninja is not installed (pip install ninja)"
    return None


RECORD_NAME = "tal_kit_build.json"


class DamagedBuildError(RuntimeError):
    """A cached build that cannot be used and cannot be rebuilt in place (e.g. a read-only cache)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def elf_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete 64-bit little-endian ELF file (None when its headers and section table fit
    inside it). Loading a truncated shared library can kill the process with SIGBUS, so look before loading."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(64)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if len(header) < 64 or header[:4] != b"\x7fELF":
        return f"not a shared library ({size} bytes)"
    if header[4] != 2 or header[5] != 1:
        return "not a 64-bit little-endian ELF file"
    phoff, shoff = int.from_bytes(header[32:40], "little"), int.from_bytes(header[40:48], "little")
    phentsize, phnum = int.from_bytes(header[54:56], "little"), int.from_bytes(header[56:58], "little")
    shentsize, shnum = int.from_bytes(header[58:60], "little"), int.from_bytes(header[60:62], "little")
    needed = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    if needed > size:
        return f"truncated: {size} bytes, its headers say at least {needed}"
    return None


def cached_build_problem(folder: Path, library: Path) -> str | None:
    """None when ``library`` is the file recorded at build time (size and SHA-256); else what is wrong with it."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return f"no build record {RECORD_NAME} (the build was interrupted)"
    if "sha256" not in record:  # recorded before hashes were kept: check the file's structure instead
        return elf_problem(library)
    size = library.stat().st_size
    if size != record.get("size"):
        return f"{library.name} is {size} bytes, the build recorded {record.get('size')} (truncated or replaced)"
    if _sha256(library) != record["sha256"]:
        return f"{library.name} does not match the checksum recorded at build time"
    return None


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def _has_cached_build(variant: str) -> bool:
    if variant == "cuda" and not torch.version.cuda:
        return False
    folder = build_dir(variant)
    return (folder / f"tal_kit_nms_{variant}_{folder.name.split('-')[-1]}.so").exists()


def _import_library(name: str, library: Path) -> ModuleType:
    """Load a verified cached build directly (no ninja: works in a read-only cache and never relinks)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_record(folder: Path, record: dict) -> None:
    # several processes may finish the same build at once: each writes its own temporary, the last rename wins
    write_json_atomic(folder / RECORD_NAME, record, indent=1)


def compile_extension(variant: str, *, verbose: bool = False, force: bool = False) -> tuple[ModuleType, dict]:
    """Compile (or load the cached build of) one variant. Raises when the build fails.

    A cached library is loaded only after it is checked against the size and SHA-256 recorded when it was built;
    a damaged one is rebuilt with one warning, or, in a cache we may not write, DamagedBuildError is raised.
    """
    from torch.utils import cpp_extension

    folder = build_dir(variant)
    if force and folder.exists():
        shutil.rmtree(folder)
    name = f"tal_kit_nms_{variant}_{folder.name.split('-')[-1]}"
    library = folder / f"{name}.so"
    if library.exists():
        problem = cached_build_problem(folder, library)
        if problem is None:
            started = time.perf_counter()
            module = _import_library(name, library)
            record = json.loads((folder / RECORD_NAME).read_text())
            record.update(build_dir=str(folder), load_seconds=round(time.perf_counter() - started, 2), cached=True)
            return module, record
        if not _writable(folder):
            raise DamagedBuildError(f"the cached build in {folder} is damaged ({problem}) and that folder is "
                                    f"read-only; run `python -m tal_kit build-ext --force` where it is writable, or "
                                    f"set TAL_KIT_EXT_DIR to a writable folder")
        warnings.warn(f"tal_kit NMS: the cached build in {folder} is damaged ({problem}); rebuilding it "
                      f"(`python -m tal_kit build-ext --force` does the same ahead of time)", RuntimeWarning,
                      stacklevel=3)
        library.unlink(missing_ok=True)
        (folder / RECORD_NAME).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    cached = False
    saved_env = {key: os.environ.get(key) for key in ("TORCH_CUDA_ARCH_LIST", "CUDA_HOME")}
    saved_home = cpp_extension.CUDA_HOME
    sources = CUDA_SOURCES if variant == "cuda" else CPU_SOURCES
    cflags = CXX_FLAGS + (["-DTAL_KIT_WITH_CUDA"] if variant == "cuda" else [])
    try:
        if variant == "cuda":
            home = find_cuda_home()
            os.environ["CUDA_HOME"] = str(home)
            cpp_extension.CUDA_HOME = str(home)
            os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch_list()
        started = time.perf_counter()
        # (copies: torch appends its own flags to the lists it is given)
        module = cpp_extension.load(name=name, sources=[str(CSRC / s) for s in sources], extra_cflags=list(cflags),
                                    extra_cuda_cflags=list(NVCC_FLAGS), extra_ldflags=list(LD_FLAGS),
                                    build_directory=str(folder), with_cuda=variant == "cuda", verbose=verbose)
        seconds = time.perf_counter() - started
    finally:
        cpp_extension.CUDA_HOME = saved_home
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # Recorded after a complete build only: a library without a matching record is never trusted.
    record = {"variant": variant, "compile_seconds": round(seconds, 2), "torch": torch.__version__,
              "cuda": torch.version.cuda, "cuda_arch_list": cuda_arch_list() if variant == "cuda" else None,
              "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), "library": library.name,
              "size": library.stat().st_size, "sha256": _sha256(library)}
    _write_record(folder, record)
    record.update(build_dir=str(folder), load_seconds=round(seconds, 2), cached=cached)
    return module, record


class _State:
    lock = threading.Lock()
    attempted = False
    module: ModuleType | None = None
    info: dict = {}


def _failure_summary(error: BaseException) -> str:
    if isinstance(error, DamagedBuildError):
        return str(error)  # already one line naming the folder and the remedy
    text = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    compiler_errors = [line for line in text if "error:" in line.lower() or "error :" in line.lower()]
    lines = compiler_errors or text or [type(error).__name__]
    return lines[0][:300]


def load_extension() -> ModuleType | None:
    """The extension module (built on first use), or None when it cannot be built here (one warning says why)."""
    with _State.lock:
        if _State.attempted:
            return _State.module
        _State.attempted = True
        setting = os.environ.get("TAL_KIT_NMS_EXT", "auto")
        info: dict = {"variant": None, "build_dir": None, "compile_seconds": None, "load_seconds": None,
                      "cached": None, "cuda_arch_list": None}
        problem = _compiler_problem() if setting != "off" else "TAL_KIT_NMS_EXT=off"
        cuda_ok, cuda_why = cuda_build_possible()
        notes = []
        variants = ["cuda", "cpu"] if cuda_ok or (setting != "cpu" and _has_cached_build("cuda")) else ["cpu"]
        if problem is not None and setting != "off":
            # No compiler: a prebuilt extension in the cache (a read-only one, say) still serves.
            variants = [v for v in variants if _has_cached_build(v)]
        elif setting == "off":
            variants = []
        for variant in variants:
            try:
                _State.module, record = compile_extension(variant)
                info.update(record)
                problem = None
                break
            except Exception as error:  # compiler errors come as RuntimeError/CalledProcessError/OSError
                notes.append(f"the {variant} build failed: {_failure_summary(error)}")
                if isinstance(error, DamagedBuildError):
                    break  # a read-only cache: nothing else can be built there either
        if _State.module is None and notes:
            problem = "; ".join(notes)
        info["cuda_build"] = cuda_why if cuda_ok else f"not built: {cuda_why}"
        if notes and _State.module is not None:
            warnings.warn(f"tal_kit NMS: {notes[0]}; using the C++ CPU kernels (GPU tensors are processed on the "
                          f"CPU). Run `python -m tal_kit build-ext --verbose` for the compiler output.",
                          RuntimeWarning, stacklevel=3)
        if _State.module is None:
            info["problem"] = problem
            if setting != "off":
                warnings.warn(f"tal_kit NMS: the C++/CUDA extension is unavailable ({problem}); using the pure-torch "
                              f"NMS, which gives the same results more slowly. Run `python -m tal_kit build-ext "
                              f"--verbose` for details.", RuntimeWarning, stacklevel=3)
        _State.info = info
        return _State.module


def extension_for(backend: str) -> ModuleType | None:
    """The extension module if it can serve `backend` ("cpp" or "cuda"), else None."""
    module = load_extension()
    if module is None:
        return None
    if backend == "cuda":
        return module if module.has_cuda() and torch.cuda.is_available() else None
    return module


def backend_info() -> dict:
    """Which NMS backend "auto" uses here and why, with the build folder and compile/load times (builds if needed).

    Keys: backend (for GPU tensors when a GPU is visible, else for CPU tensors), cpu_backend, gpu_backend (None
    without a GPU), reason, variant, build_dir, cuda_arch_list, compile_seconds (cold build), load_seconds (this
    process: compile or cached load), cached, cuda_build.
    """
    module = load_extension()
    info = dict(_State.info)
    gpu = torch.cuda.is_available()
    if module is None:
        cpu_backend, reason = "torch", f"pure-torch NMS (no extension: {info.get('problem')})"
    else:
        cpu_backend = "cpp"
        reason = f"{info['variant']} extension from {info['build_dir']}"
    gpu_backend = None
    if gpu:
        gpu_backend = "cuda" if module is not None and module.has_cuda() else "torch"
        if gpu_backend == "torch":
            reason += f"; GPU tensors use the pure-torch NMS on the GPU ({info.get('cuda_build')})"
    elif module is not None and module.has_cuda():
        reason += "; CUDA kernels compiled, but no GPU is visible"
    info.update(backend=gpu_backend or cpu_backend, cpu_backend=cpu_backend, gpu_backend=gpu_backend, reason=reason)
    return info


def cli_info_lines() -> list[str]:
    """Lines for ``tal-kit info``."""
    info = backend_info()
    lines = [f"NMS backend: {info['backend']} (CPU tensors: {info['cpu_backend']}, GPU tensors: "
             f"{info['gpu_backend'] or 'no GPU visible'})", f"NMS why: {info['reason']}",
             f"NMS CUDA kernels: {info['cuda_build']}"]
    if info.get("build_dir"):
        lines.append(f"NMS build: {info['build_dir']} (cold compile {info['compile_seconds']} s; this process "
                     f"{'loaded the cached build' if info['cached'] else 'compiled it'} in {info['load_seconds']} s"
                     + (f"; CUDA archs {info['cuda_arch_list']}" if info.get("cuda_arch_list") else "") + ")")
    return lines


def cli_build_ext(args: list[str]) -> int:
    """``tal-kit build-ext [--cpu-only] [--force] [--verbose]``: compile the NMS extension ahead of time."""
    parser = argparse.ArgumentParser(prog="tal-kit build-ext", description="Compile the tal_kit NMS extension "
                                     f"(cache: {cache_root()}, override with TAL_KIT_EXT_DIR).")
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA kernels even when nvcc is present")
    parser.add_argument("--force", action="store_true", help="delete the cached build and compile from scratch")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands and output")
    options = parser.parse_args(args)
    problem = _compiler_problem()
    if problem:
        print(f"error: cannot build the NMS extension: {problem}", file=sys.stderr)
        return 1
    cuda_ok, cuda_why = cuda_build_possible()
    variants = ["cuda"] if cuda_ok and not options.cpu_only else ["cpu"]
    if not cuda_ok and not options.cpu_only:
        print(f"CUDA kernels skipped: {cuda_why}")
    if variants == ["cuda"]:
        print(f"compiling C++ and CUDA kernels ({cuda_why}; TORCH_CUDA_ARCH_LIST={cuda_arch_list()}) ...", flush=True)
    else:
        print("compiling the C++ kernels ...", flush=True)
    try:
        _, record = compile_extension(variants[0], verbose=options.verbose, force=options.force)
    except Exception as error:
        print(f"error: the {variants[0]} build failed: {_failure_summary(error)}\n"
              f"(run with --verbose for the full compiler output)", file=sys.stderr)
        return 1
    state = "cached build loaded" if record["cached"] else "compiled"
    print(f"{state} in {record['load_seconds']} s: {record['build_dir']} "
          f"(cold compile took {record['compile_seconds']} s)")
    return 0
