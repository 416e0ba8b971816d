"""Offline instance-retrieval benchmark data built from photos bundled with installed packages.

:func:`load_instances` builds a small instance-retrieval benchmark in the spirit of the
DeepHash paper's Fisher Vector experiments without downloading anything: the photographs
shipped inside scikit-image (``skimage/data``) and scikit-learn
(``sklearn/datasets/images``) are cut into random square regions ("instances"), each
region is re-rendered several times under a random geometric, photometric and compression
change ("views"), and every view is described by a Fisher Vector of its SIFT descriptors
(first-order statistics of a 128-component diagonal GMM over 64-dim PCA-reduced RootSIFT:
8192 dimensions). The arrays are cached in one ``.npz`` file keyed by the parameters.

:func:`load_descriptors` and :func:`save_fvecs` read and write descriptor matrices in the
``.npy`` and ``.fvecs`` formats (the latter is the format of the INRIA Holidays / SIFT1M /
GIST1M benchmark files).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import ArrayHeader, atomic_write, read_npy, read_npz
from ._optional import require
from ._validation import check_bool, check_int
from .features import FisherVectorEncoder, sift_descriptors

if TYPE_CHECKING:
    from sklearn.utils import Bunch

__all__ = ["load_descriptors", "load_instances", "save_fvecs"]

# Bump whenever anything below changes the arrays: old cache files are then ignored.
_RECIPE_VERSION = 1

# Real photographs (and micrographs / scans) in skimage/data. Left out on purpose: the
# synthetic images (chessboard, color, logo, phantom), the binary silhouette (horse) and
# the non-image files. Missing files are skipped (older scikit-image releases).
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")

# Photos larger than this (longest side, pixels) are shrunk first (cv2.INTER_AREA), so that
# one big photo (retina.jpg is 1411 x 1411) does not take a quarter of the instances.
_MAX_PHOTO_SIDE = 800
# Instances: square regions with an integer side drawn uniformly from this range (clipped
# to the photo), at a uniform position in a photo drawn with probability proportional to
# its area. A draw (photo and region) is rejected while the pristine region has fewer than
# _MIN_REGION_KEYPOINTS SIFT keypoints, at most _MAX_REDRAWS times (then the draw with the
# most keypoints is kept): flat regions (sky, black borders, most of retina.jpg) give views
# without keypoints, i.e. zero Fisher Vectors, which lie closer to every unit-norm vector
# than most true matches and swamp the rankings.
_REGION_SIDE = (96, 224)
_MIN_REGION_KEYPOINTS = 30
_MAX_REDRAWS = 100
# Views: the strength of each random change, drawn independently per view.
_ROTATION_DEG = 20.0  # rotation uniform in [-20, 20] degrees
_SCALE = (0.8, 1.25)  # zoom, log-uniform
_CORNER_JITTER = 0.05  # perspective: each output corner moves up to 5% of the side
_SHIFT = 0.08  # translation up to 8% of the side, each axis
_GAIN = (0.75, 1.25)  # photometric: y = gain * 255 (x / 255) ** gamma + bias
_BIAS = 20.0  # bias uniform in [-20, 20] grey levels
_GAMMA = (0.75, 1.33)  # gamma, log-uniform
_BLUR_SIGMA = (0.6, 1.6)  # half of the views: Gaussian blur, sigma uniform (pixels)
_NOISE_STD = (3.0, 10.0)  # the other half: additive Gaussian noise, std uniform (levels)
_JPEG_QUALITY = (30, 90)  # JPEG re-encoding quality, integer uniform, both ends included
# The descriptor (SIFT, PCA, GMM, Fisher Vector) is deephash_ext.features.FisherVectorEncoder,
# fitted on the views of the training instances only.

_Recipe = dict[str, Any]


# ---------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------


def _check_path(path: object, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"{name} must be a non-empty file name, got {path!r}")
    return Path(text)


def _default_cache_dir() -> Path:
    env = os.environ.get("DEEPHASH_DATA")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "deephash_ext"


# ---------------------------------------------------------------------------------------
# source photos
# ---------------------------------------------------------------------------------------


def _photo_paths() -> list[Path]:
    """The bundled photographs that exist on disk, in a fixed order."""
    import skimage.data
    import sklearn.datasets

    skimage_dir = Path(os.path.dirname(skimage.data.__file__))
    sklearn_dir = Path(os.path.dirname(sklearn.datasets.__file__)) / "images"
    candidates = [skimage_dir / name for name in _SKIMAGE_PHOTOS]
    candidates += [sklearn_dir / name for name in _SKLEARN_PHOTOS]
    return [path for path in candidates if path.is_file()]


def _read_gray(path: Path) -> np.ndarray:
    """A photo as a 2-D uint8 grey image, shrunk to at most _MAX_PHOTO_SIDE pixels."""
    import cv2
    import skimage.io

    image = np.asarray(skimage.io.imread(str(path)))
    if image.ndim == 3:
        image = image[..., :3]
        if image.dtype != np.uint8:
            raise ValueError(f"{path}: expected an 8-bit photo, got dtype {image.dtype}")
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit photo, got {image.dtype} {image.shape}")
    height, width = image.shape
    scale = _MAX_PHOTO_SIDE / max(height, width)
    if scale < 1.0:
        size = (round(width * scale), round(height * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# instances and views
# ---------------------------------------------------------------------------------------


def _sample_region(
    photos: Sequence[np.ndarray], probabilities: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One instance: int64 (photo, x0, y0, side), by rejection sampling (see _REGION_SIDE)."""
    import cv2

    sift = cv2.SIFT_create()  # type: ignore[attr-defined]  # missing from the cv2 stubs
    best, best_count = None, -1
    for _ in range(_MAX_REDRAWS):
        p = int(rng.choice(len(photos), p=probabilities))
        height, width = photos[p].shape
        side = min(int(rng.integers(_REGION_SIDE[0], _REGION_SIDE[1] + 1)), height, width)
        x0 = int(rng.integers(0, width - side + 1))
        y0 = int(rng.integers(0, height - side + 1))
        count = len(sift.detect(photos[p][y0 : y0 + side, x0 : x0 + side], None))
        if count > best_count:
            best, best_count = (p, x0, y0, side), count
        if count >= _MIN_REGION_KEYPOINTS:
            break
    return np.array(best, dtype=np.int64)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _render_view(photo: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One transformed view (side x side uint8) of the square region of ``photo``."""
    import cv2

    _, x0, y0, side = (int(v) for v in region)
    half = side / 2.0
    centre = np.array([x0 + half, y0 + half])
    unit = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    src = centre + half * unit
    # geometry: similarity about the region centre, corner jitter for perspective, shift
    theta = np.deg2rad(rng.uniform(-_ROTATION_DEG, _ROTATION_DEG))
    scale = _log_uniform(rng, _SCALE)
    rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shift = rng.uniform(-_SHIFT, _SHIFT, size=2) * side
    jitter = rng.uniform(-_CORNER_JITTER, _CORNER_JITTER, size=(4, 2)) * side
    dst = half + shift + (half * unit) @ rotation.T + jitter
    homography = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    view = cv2.warpPerspective(
        photo, homography, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    # photometric change through a 256-entry lookup table
    gain = rng.uniform(*_GAIN)
    bias = rng.uniform(-_BIAS, _BIAS)
    gamma = _log_uniform(rng, _GAMMA)
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = np.clip(np.rint(gain * 255.0 * levels**gamma + bias), 0, 255).astype(np.uint8)
    view = lut[view]
    # blur or noise
    if rng.random() < 0.5:
        view = cv2.GaussianBlur(view, (0, 0), sigmaX=rng.uniform(*_BLUR_SIGMA))
    else:
        noise = rng.normal(0.0, rng.uniform(*_NOISE_STD), size=view.shape)
        view = np.clip(np.rint(view + noise), 0, 255).astype(np.uint8)
    # JPEG re-encoding
    quality = int(rng.integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1))
    ok, buffer = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - libjpeg failure
        raise RuntimeError("cv2.imencode failed to JPEG-encode a view")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    return np.ascontiguousarray(decoded)


def _make_instance(
    photos: Sequence[np.ndarray],
    probabilities: np.ndarray,
    n_views: int,
    seed: Sequence[int],
    max_keypoints: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The region of one instance and the SIFT descriptors of its views (own random stream)."""
    rng = np.random.default_rng(list(seed))
    region = _sample_region(photos, probabilities, rng)
    photo = photos[int(region[0])]
    views = [
        sift_descriptors(_render_view(photo, region, rng), max_keypoints) for _ in range(n_views)
    ]
    return region, views


# ---------------------------------------------------------------------------------------
# Fisher Vectors
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------

_ARRAY_NAMES = ("X_train", "y_train", "X_query", "y_query", "X_db", "y_db", "pairs_train")


def _require_demo_packages(feature: str) -> None:
    """ImportError naming the demo extra, before any work, when OpenCV or scikit-image is
    missing (the data builds need both)."""
    for module in ("cv2", "skimage"):
        require(module, feature, "demo")


def _recipe_key(params: dict[str, Any], paths: Sequence[Path]) -> str:
    """The cache key of a build: its parameters, the photos' digests and the versions of
    OpenCV and scikit-learn (both change the descriptors)."""
    import cv2
    import sklearn

    return _cache_key(
        dict(
            params,
            photos=[[p.name, _file_digest(p)] for p in paths],
            opencv=cv2.__version__,
            sklearn=sklearn.__version__,
        )
    )


def _cache_key(recipe: _Recipe) -> str:
    blob = json.dumps(recipe, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]


def _read_cache(
    path: Path, key: str, array_names: Sequence[str] = _ARRAY_NAMES
) -> dict[str, Any] | None:
    """The cached arrays, or None when the file is missing, corrupt or for another recipe."""
    if not path.is_file():
        return None
    names = {*array_names, "key", "description", "images"}

    def expect(meta: dict[str, Any], headers: Any) -> None:
        # Every array present, nothing else, and the key a string: checked before reading.
        if set(headers) != names or headers["key"].dtype.kind != "U" or headers["key"].shape:
            raise ValueError("not a cache file of this recipe")

    try:
        data, _ = read_npz(path, kind="dataset cache", expect=expect, require_meta=False)
    except (OSError, ValueError):
        return None
    if str(data["key"][()]) != key:
        return None
    out: dict[str, Any] = {name: data[name] for name in array_names}
    out["description"] = str(data["description"][()])
    out["images"] = [str(name) for name in data["images"]]
    return out


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def load_instances(
    n_instances: int = 1200,
    n_views: int = 5,
    test_fraction: float = 0.4,
    random_state: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
    *,
    n_components: int = 128,
    pca_dims: int = 64,
    max_keypoints: int = 300,
    root_sift: bool = True,
) -> Bunch:
    """Instance-retrieval benchmark with Fisher Vector descriptors, built offline.

    Recipe (every number is also in ``description``):

    1. **Photos.** The real photographs bundled with scikit-image (``skimage/data``:
       astronaut, brick, camera, cell, chelsea, clock_motion, coffee, coins, grass, gravel,
       hubble_deep_field, ihc, microaneurysms, moon, motorcycle_left/right, page, retina,
       rocket, text; those present on disk) and scikit-learn (china, flower), read from
       their files (nothing is downloaded), converted to grey uint8 and shrunk to at most
       800 pixels on the longest side.
    2. **Instances.** A square region with side uniform in [96, 224] pixels (clipped to the
       photo) at a uniform position of a photo drawn with probability proportional to its
       area. Regions may overlap. A draw (photo and region) whose pristine region has fewer
       than 30 SIFT keypoints is redrawn (up to 100 times, then the draw with the most
       keypoints is kept), so nearly featureless photos (retina, cell, clock_motion,
       microaneurysms) rarely or never supply instances; ``description`` lists the
       instances per photo. Instances are split at random into training and test
       instances; the views of one instance are never split.
    3. **Views.** Every view, view 0 included, is the region re-rendered from the photo
       (border reflected) under an independent random change: a homography made of a
       rotation in [-20, 20] degrees, a zoom log-uniform in [0.8, 1.25], a shift up to 8%
       of the side and a perspective jitter of each corner up to 5% of the side; then
       ``255 * gain * (x / 255) ** gamma + bias`` with gain in [0.75, 1.25], bias in
       [-20, 20], gamma log-uniform in [0.75, 1.33]; then with probability 1/2 a Gaussian
       blur (sigma in [0.6, 1.6] px), else additive Gaussian noise (std in [3, 10] levels);
       then JPEG re-encoding at an integer quality in [30, 90].
    4. **Local descriptors.** OpenCV SIFT at DoG keypoints (default detector settings),
       the ``max_keypoints`` strongest by response; RootSIFT (L1 normalisation, square
       root) when ``root_sift``.
    5. **Codebook.** PCA to ``pca_dims`` dimensions and a diagonal GMM with
       ``n_components`` components (scikit-learn ``GaussianMixture``, k-means++ seeding,
       EM for at most 100 iterations, seeded), both fitted on at most 40000 descriptors
       drawn from the views of the *training* instances only.
    6. **Fisher Vectors.** First-order statistics only: for Gaussian ``k``,
       ``1 / (T sqrt(w_k)) * sum_t gamma_t(k) (x_t - mu_k) / sigma_k`` over the ``T``
       descriptors of the view, giving ``n_components * pca_dims`` dimensions (8192 by
       default, as in the paper), then the signed square root and L2 normalisation. A view
       without keypoints gets the zero vector (counted in ``description``).

    The result is fully determined by the parameters (bit for bit, with or without the
    cache) for a given OpenCV / scikit-learn installation. Each instance draws its views
    from its own random stream, so the views are computed in threads without changing the
    result. The default build takes about 65 s on an idle 2-core machine (SIFT ~40 s,
    PCA + GMM ~15 s, encoding ~7 s), up to ~2.5 minutes when other jobs share the cores; a
    cache hit takes about a second.

    Parameters
    ----------
    n_instances : int, default=1200
        Number of instances (distinct regions), at least 2.
    n_views : int, default=5
        Views per instance, at least 2.
    test_fraction : float, default=0.4
        Fraction of the instances held out as test instances (rounded to the nearest
        integer, which must leave at least one instance on each side).
    random_state : int, default=0
        Non-negative seed of every random choice (regions, views, split, codebook).
    cache_dir : str or os.PathLike, optional
        Directory of the cache file. Default: the environment variable ``DEEPHASH_DATA``
        when set, else ``~/.cache/deephash_ext``. The file name is a hash of every
        parameter below, a recipe version, the source photos' SHA-256 and the OpenCV and
        scikit-learn versions; it is written atomically, and a corrupt file is rebuilt.
    verbose : bool, default=True
        Show tqdm progress bars (on stderr, removed when done).
    n_components : int, default=128
        GMM components (keyword only; smaller values make quick test data).
    pca_dims : int, default=64
        PCA dimensions of the local descriptors, at most 128 (keyword only).
    max_keypoints : int, default=300
        Keypoints kept per view, the strongest by DoG response (keyword only).
    root_sift : bool, default=True
        Apply RootSIFT before the PCA (keyword only).

    Returns
    -------
    data : sklearn.utils.Bunch
        With the fields

        - ``X_train`` float32 (n_train * n_views, n_components * pca_dims): every view of
          every training instance, grouped by instance (views in order);
        - ``y_train`` int64 (n_train * n_views,): instance ids;
        - ``X_query`` float32 (n_test, d) and ``y_query`` int64 (n_test,): view 0 of each
          test instance;
        - ``X_db`` float32 (n_test * (n_views - 1), d) and ``y_db`` int64: views
          ``1 .. n_views - 1`` of each test instance, grouped by instance;
        - ``pairs_train`` int64 (n_train * n_views * (n_views - 1) / 2, 2): every pair
          ``(i, j)``, ``i < j``, of rows of ``X_train`` that show the same instance;
        - ``description`` str: the recipe with its numbers and statistics (empty views,
          keypoints per view, GMM convergence);
        - ``images`` list of str: the source photo file names;
        - ``params`` dict: the parameters of this call (without ``cache_dir`` and
          ``verbose``) and the recipe version.

        Instance ids are the indices ``0 .. n_instances - 1`` of the regions; training
        and test ids are disjoint and each is sorted.

    Raises
    ------
    TypeError
        If a parameter has the wrong type (the message names it).
    ValueError
        If a parameter is out of range (the message names it), or the training views hold
        too few SIFT descriptors to fit the codebook.
    RuntimeError
        If no bundled photo is found on disk.

    Examples
    --------
    >>> data = load_instances(n_instances=12, n_views=3, n_components=4,
    ...                       pca_dims=8, cache_dir=tmp, verbose=False)  # doctest: +SKIP
    >>> data.X_train.shape, data.X_query.shape, data.X_db.shape  # doctest: +SKIP
    ((21, 32), (5, 32), (10, 32))
    """
    n_instances = check_int(n_instances, "n_instances", minimum=2)
    n_views = check_int(n_views, "n_views", minimum=2)
    if isinstance(test_fraction, (bool, np.bool_)) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a float, got {type(test_fraction).__name__} {test_fraction!r}"
        )
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = round(test_fraction * n_instances)
    if not 1 <= n_test <= n_instances - 1:
        raise ValueError(
            f"test_fraction={test_fraction} with n_instances={n_instances} gives {n_test} "
            "test instances; each side of the split needs at least one instance"
        )
    random_state = check_int(random_state, "random_state", minimum=0, maximum=2**32 - 1)
    cache_path_dir = (
        _default_cache_dir() if cache_dir is None else _check_path(cache_dir, "cache_dir")
    )
    verbose = check_bool(verbose, "verbose")
    n_components = check_int(n_components, "n_components", minimum=1)
    pca_dims = check_int(pca_dims, "pca_dims", minimum=1, maximum=128)
    max_keypoints = check_int(max_keypoints, "max_keypoints", minimum=1)
    root_sift = check_bool(root_sift, "root_sift")

    _require_demo_packages("load_instances (the bundled benchmark data)")
    from sklearn.utils import Bunch

    params: dict[str, Any] = {
        "n_instances": n_instances,
        "n_views": n_views,
        "test_fraction": test_fraction,
        "random_state": random_state,
        "n_components": n_components,
        "pca_dims": pca_dims,
        "max_keypoints": max_keypoints,
        "root_sift": root_sift,
        "recipe_version": _RECIPE_VERSION,
    }
    paths = _photo_paths()
    if not paths:
        raise RuntimeError(
            "no bundled photo found: scikit-image's data directory and "
            "scikit-learn's sample images are missing"
        )
    key = _recipe_key(params, paths)
    cache_path = cache_path_dir / f"instances_{key[:20]}.npz"

    cached = _read_cache(cache_path, key)
    if cached is None:
        if cache_path.exists() and verbose:
            print(
                f"deephash_ext: cache file {cache_path} is unreadable or stale; rebuilding",
                file=sys.stderr,
            )
        cached = _build(params, paths, verbose)
        arrays = {name: cached[name] for name in _ARRAY_NAMES}
        arrays["description"] = np.array(cached["description"])
        arrays["images"] = np.array(cached["images"])
        arrays["key"] = np.array(key)
        _write_npz_atomic(cache_path, arrays)
    return Bunch(
        **{name: cached[name] for name in _ARRAY_NAMES},
        description=cached["description"],
        images=cached["images"],
        params=params,
    )


def _fisher_vectors(
    encoder: FisherVectorEncoder, descriptors: list[np.ndarray], verbose: bool
) -> np.ndarray:
    """The Fisher Vectors of every view's descriptors, with a progress bar (both builders)."""
    from tqdm import tqdm

    with tqdm(
        total=len(descriptors),
        desc="Fisher vectors (views)",
        leave=False,
        file=sys.stderr,
        disable=not verbose,
    ) as bar:
        return encoder.transform_descriptors(descriptors, bar.update)


def _build(params: dict[str, Any], paths: list[Path], verbose: bool) -> dict[str, Any]:
    from tqdm import tqdm

    started = time.perf_counter()
    n_instances, n_views = params["n_instances"], params["n_views"]
    seed = params["random_state"]
    photos = [_read_gray(p) for p in paths]
    areas = np.array([p.shape[0] * p.shape[1] for p in photos], dtype=np.float64)
    probabilities = areas / areas.sum()
    order = np.random.default_rng([seed, 1]).permutation(n_instances)
    n_test = round(params["test_fraction"] * n_instances)
    test_ids = np.sort(order[:n_test]).astype(np.int64)
    train_ids = np.sort(order[n_test:]).astype(np.int64)

    def make(i: int) -> tuple[np.ndarray, list[np.ndarray]]:
        return _make_instance(photos, probabilities, n_views, (seed, 0, i), params["max_keypoints"])

    workers = max(1, min(4, os.cpu_count() or 1))
    regions = np.empty((n_instances, 4), dtype=np.int64)
    per_instance: list[list[np.ndarray]] = []
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(
            total=n_instances,
            desc="SIFT (instances)",
            leave=False,
            file=sys.stderr,
            disable=not verbose,
        ) as bar,
    ):
        # map() yields in submission order: the result does not depend on the threads.
        for i, (region, views) in enumerate(pool.map(make, range(n_instances))):
            regions[i] = region
            per_instance.append(views)
            bar.update(1)
    sift_done = time.perf_counter()

    def gather(ids: Iterable[int], views: range) -> list[np.ndarray]:
        return [per_instance[i][v] for i in ids for v in views]

    train_desc = gather(train_ids, range(n_views))
    query_desc = gather(test_ids, range(1))
    db_desc = gather(test_ids, range(1, n_views))
    if verbose:
        print("deephash_ext: fitting PCA + GMM on training descriptors", file=sys.stderr)
    encoder = FisherVectorEncoder(
        params["n_components"],
        params["pca_dims"],
        max_keypoints=params["max_keypoints"],
        root_sift=params["root_sift"],
        random_state=seed,
    ).fit_descriptors(train_desc)
    info = encoder.fit_info_
    codebook_done = time.perf_counter()
    all_desc = train_desc + query_desc + db_desc
    fvs = _fisher_vectors(encoder, all_desc, verbose)
    n_tr, n_q = len(train_desc), len(query_desc)

    local = np.arange(n_views)
    i_idx, j_idx = np.triu_indices(n_views, k=1)
    base = (np.arange(len(train_ids)) * n_views)[:, None]
    pairs = np.stack([(base + local[i_idx]).ravel(), (base + local[j_idx]).ravel()], axis=1)

    counts = np.array([d.shape[0] for d in all_desc])
    empty = [
        int((counts[s] == 0).sum())
        for s in (slice(0, n_tr), slice(n_tr, n_tr + n_q), slice(n_tr + n_q, None))
    ]
    out: dict[str, Any] = {
        "X_train": fvs[:n_tr],
        "y_train": np.repeat(train_ids, n_views),
        "X_query": fvs[n_tr : n_tr + n_q],
        "y_query": test_ids.copy(),
        "X_db": fvs[n_tr + n_q :],
        "y_db": np.repeat(test_ids, n_views - 1),
        "pairs_train": pairs.astype(np.int64),
        "images": [p.name for p in paths],
    }
    out["description"] = _describe(
        params,
        paths,
        photos,
        regions,
        len(train_ids),
        n_test,
        counts,
        empty,
        info,
        int(pairs.shape[0]),
    )
    if verbose:
        now = time.perf_counter()
        print(
            f"deephash_ext: built {len(all_desc)} views in {now - started:.1f} s (views + "
            f"SIFT {sift_done - started:.1f} s, PCA + GMM {codebook_done - sift_done:.1f} s, "
            f"Fisher Vectors {now - codebook_done:.1f} s)",
            file=sys.stderr,
        )
    return out


def _describe(
    params: dict[str, Any],
    paths: list[Path],
    photos: list[np.ndarray],
    regions: np.ndarray,
    n_train: int,
    n_test: int,
    counts: np.ndarray,
    empty: list[int],
    info: dict[str, Any],
    n_pairs: int,
) -> str:
    per_photo = np.bincount(regions[:, 0], minlength=len(paths))
    photo_list = ", ".join(
        f"{p.name} {im.shape[1]}x{im.shape[0]} ({c})" for p, im, c in zip(paths, photos, per_photo)
    )
    k, d = params["n_components"], params["pca_dims"]
    root = "RootSIFT (L1 normalisation + square root)" if params["root_sift"] else "raw SIFT"
    converged = "converged" if info["converged"] else "NOT converged"
    return "\n".join(
        [
            f"deephash_ext instance-retrieval data, recipe version {_RECIPE_VERSION}, "
            f"random_state={params['random_state']}.",
            f"Photos ({len(paths)}, grey, longest side <= {_MAX_PHOTO_SIDE} px; width x height "
            f"(instances)): {photo_list}.",
            f"Instances: {params['n_instances']} square regions, side uniform in "
            f"[{_REGION_SIDE[0]}, {_REGION_SIDE[1]}] px clipped to the photo, photo drawn in "
            f"proportion to its area, photo and region redrawn while the pristine region has < "
            f"{_MIN_REGION_KEYPOINTS} SIFT keypoints; "
            f"split by instance: {n_train} train, {n_test} test "
            f"(test_fraction={params['test_fraction']}).",
            f"Views: {params['n_views']} per instance, all transformed: homography = rotation "
            f"+-{_ROTATION_DEG:g} deg, zoom log-uniform [{_SCALE[0]}, {_SCALE[1]}], shift "
            f"<= {_SHIFT:g} side, corner jitter <= {_CORNER_JITTER:g} side (border reflected); "
            f"gain [{_GAIN[0]}, {_GAIN[1]}], bias +-{_BIAS:g}, gamma log-uniform "
            f"[{_GAMMA[0]}, {_GAMMA[1]}]; Gaussian blur sigma [{_BLUR_SIGMA[0]}, "
            f"{_BLUR_SIGMA[1]}] or noise std [{_NOISE_STD[0]:g}, {_NOISE_STD[1]:g}] (1/2 each); "
            f"JPEG quality [{_JPEG_QUALITY[0]}, {_JPEG_QUALITY[1]}].",
            f"Local descriptors: OpenCV SIFT at DoG keypoints, <= {params['max_keypoints']} "
            f"strongest per view, {root}; mean {counts.mean():.1f} keypoints per view "
            f"(min {counts.min()}, max {counts.max()}).",
            f"Codebook: PCA to {d} dims (explained variance {info['explained_variance']:.3f}) "
            f"and a {k}-component diagonal GMM (k-means++ seeding, {converged} after "
            f"{info['n_iter']} EM iterations, tol 1e-3), fitted on {info['n_sample']} "
            "descriptors of training views only.",
            f"Fisher Vectors: first-order statistics, {k} x {d} = {k * d} dims, signed square "
            "root, L2 normalisation; views without keypoints get the zero vector: "
            f"{empty[0]} train, {empty[1]} query, {empty[2]} database.",
            f"Queries: view 0 of each test instance; database: views 1..{params['n_views'] - 1}; "
            f"pairs_train: {n_pairs} same-instance pairs of training rows.",
        ]
    )


def load_descriptors(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a descriptor matrix from a ``.npy`` or ``.fvecs`` file.

    ``.fvecs`` is the little-endian format of the INRIA benchmarks: each vector is an
    int32 dimension ``d`` followed by ``d`` float32 values, and every vector of a file has
    the same ``d``. An empty ``.fvecs`` file gives an array of shape ``(0, 0)``.

    Parameters
    ----------
    path : str or os.PathLike
        File name ending in ``.npy`` (a 2-D floating-point array, read with
        ``allow_pickle=False``) or ``.fvecs``.

    Returns
    -------
    X : ndarray of float32, shape (n, d)
        C-contiguous.

    Raises
    ------
    TypeError
        If ``path`` is not a str or path-like.
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the extension is not ``.npy`` or ``.fvecs``, or the file is malformed (the
        message names the path and says what the file is not: a text or ``.fvecs`` file
        named ``.npy``, an archive, Python objects, a header declaring more data than the
        file holds). Nothing is allocated before the header has been checked.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.fvecs")
    >>> save_fvecs(path, np.arange(6).reshape(2, 3))
    >>> load_descriptors(path)
    array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    file = _check_path(path, "path")
    suffix = file.suffix.lower()
    if suffix == ".npy":

        def expect(header: ArrayHeader) -> None:  # before the array is read
            if len(header.shape) != 2:
                raise ValueError(f"{file}: expected a 2-D array, got shape {header.shape}")
            if header.dtype.kind != "f":
                raise ValueError(
                    f"{file}: expected floating-point descriptors, got dtype {header.dtype}"
                )

        array = read_npy(file, kind=".npy array", expect=expect)
        return np.ascontiguousarray(array, dtype=np.float32)
    if suffix == ".fvecs":
        raw = np.fromfile(file, dtype=np.uint8)
        if raw.size == 0:
            return np.zeros((0, 0), dtype=np.float32)
        if raw[:6].tobytes() == b"\x93NUMPY":
            raise ValueError(f"{file}: malformed .fvecs file: it is a .npy file (name it .npy)")
        if raw.size < 4:
            raise ValueError(
                f"{file}: malformed .fvecs file: {raw.size} bytes, shorter than "
                "one int32 dimension header"
            )
        dim = int(raw[:4].view("<i4")[0])
        if dim <= 0:
            raise ValueError(f"{file}: malformed .fvecs file: first dimension header is {dim}")
        record = 4 * (dim + 1)
        if raw.size % record:
            raise ValueError(
                f"{file}: malformed .fvecs file: {raw.size} bytes is not a multiple of the "
                f"record size {record} (int32 dimension {dim} + {dim} float32 values)"
            )
        words = raw.view("<i4").reshape(-1, dim + 1)
        bad = np.flatnonzero(words[:, 0] != dim)
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{file}: malformed .fvecs file: vector {row} has dimension "
                f"header {int(words[row, 0])}, expected {dim}"
            )
        values = raw.view("<f4").reshape(-1, dim + 1)[:, 1:]
        return np.ascontiguousarray(values, dtype=np.float32)
    raise ValueError(
        f"{file}: unsupported descriptor file extension {suffix!r}; expected '.npy' or '.fvecs'"
    )


def save_fvecs(path: str | os.PathLike[str], X: object) -> None:
    """Write a descriptor matrix in the ``.fvecs`` format, atomically.

    Each row becomes a little-endian int32 dimension followed by the row as little-endian
    float32. The file is written to a temporary file in the same directory and moved into
    place with :func:`os.replace`, so readers never see a partial file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (conventionally ending in ``.fvecs``); its directory must exist.
    X : array_like of real numbers, shape (n, d)
        Converted to float32; ``d >= 1``.

    Raises
    ------
    TypeError
        If ``path`` is not a str or path-like, or ``X`` does not hold real numbers.
    ValueError
        If ``X`` is not 2-D or has no columns.
    OSError
        If the file cannot be written (the message names ``path``); an existing file is
        then left as it was. A file that is replaced keeps its permission bits.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.fvecs")
    >>> save_fvecs(path, np.ones((3, 2)))
    >>> os.path.getsize(path)  # 3 vectors of 4 + 2 * 4 bytes
    36
    """
    file = _check_path(path, "path")
    array = np.asarray(X)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"X must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {array.shape}")
    n, dim = array.shape
    if dim < 1:
        raise ValueError(f"X must have at least one column, got shape {array.shape}")
    records = np.empty((n, dim + 1), dtype="<i4")
    records[:, 0] = dim
    records[:, 1:] = array.astype("<f4").view("<i4")
    atomic_write(file, lambda handle: handle.write(records.tobytes()))


# ---------------------------------------------------------------------------------------
# the paper-shaped retrieval benchmark
# ---------------------------------------------------------------------------------------

# Per scale: regions seen in two views for the training corpus and its matching pairs
# (ImageNet's and Yandex's roles), regions seen in two views for validation pairs (SMVS's
# role), evaluation instances seen in 5 views (Holidays' role), and the descriptor's size.
_SCALES: dict[str, dict[str, int]] = {
    "tiny": dict(n_pair_regions=40, n_val_regions=16, n_eval=16, n_components=8, pca_dims=16),
    "demo": dict(n_pair_regions=2500, n_val_regions=300, n_eval=400, n_components=128, pca_dims=64),
    "paper": dict(
        n_pair_regions=30_000, n_val_regions=2000, n_eval=1000, n_components=128, pca_dims=64
    ),
}
_BENCHMARK_RECIPE_VERSION = 4
_EVAL_VIEWS = 5
# Shares of the photos' total area for the training, validation and evaluation photos.
_ROLE_AREA_SHARES = (0.5, 0.25, 0.25)
# Non-matching validation pairs per validation region: view 0 of the region with view 1
# of this many other regions, drawn uniformly without replacement (all of them if fewer).
_VAL_NEGATIVES = 50
_BENCHMARK_ARRAYS = (
    "X_train",
    "pairs_train",
    "X_val",
    "pairs_val",
    "labels_val",
    "X_query",
    "y_query",
    "X_db",
    "y_db",
    "regions_train",
    "regions_val",
    "regions_eval",
    "photo_role",
    "build_seconds",
)


def _split_photos(names: Sequence[str], areas: np.ndarray, seed: int) -> np.ndarray:
    """The role of each photo: 0 training, 1 validation, 2 evaluation (_ROLE_AREA_SHARES).
    Photos of one scene (``x_left`` / ``x_right``) stay together; groups go, in a seeded
    order, to the role furthest below its share of the total area (ties: training first),
    so every role gets a photo when there are at least three groups."""
    scene = [n.rsplit(".", 1)[0].removesuffix("_left").removesuffix("_right") for n in names]
    groups = sorted(set(scene))
    order = np.random.default_rng([seed, 20]).permutation(len(groups))
    role = np.zeros(len(names), dtype=np.int64)
    done = np.zeros(len(_ROLE_AREA_SHARES))
    for g in order:
        members = np.array([s == groups[g] for s in scene])
        target = int(np.argmin(done / np.array(_ROLE_AREA_SHARES)))
        role[members] = target
        done[target] += float(areas[members].sum())
    return role


def load_retrieval_benchmark(
    scale: str = "demo",
    *,
    random_state: int = 0,
    max_keypoints: int = 300,
    cache_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> Any:
    """The offline retrieval benchmark in the shape of the DeepHash paper's protocol.

    Built from the photos bundled with scikit-image and scikit-learn, split by photo so
    that the roles of the paper's datasets never share a photo or a region
    (docs/algorithms.md, sec. 6.9). Regions are drawn from a uniformly chosen photo of
    their role.

    * **training photos** (half of the area): the training corpus (the role of ImageNet:
      ``X_train``, two random views of each random region) and its matching pairs (Yandex's
      role: ``pairs_train``, the two views of one region);
    * **validation photos** (a quarter): validation pairs (SMVS's role: ``X_val``,
      ``pairs_val``, ``labels_val``): each region's two views (matching) and view 0 of the
      region with view 1 of 50 random other regions (non-matching);
    * **evaluation photos** (a quarter): instances seen in 5 views (Holidays' role): view 0
      is the query (``X_query``, ``y_query``), views 1-4 the database (``X_db``, ``y_db``).

    Descriptors are the Fisher Vectors of :class:`deephash_ext.features.FisherVectorEncoder`,
    fitted on the training corpus only; the fitted ``encoder`` is returned, so other images
    can be featurised with exactly this pipeline. Views, regions and the split are drawn as
    in :func:`load_instances` (one random stream per region, so the result does not depend
    on the threads). The result is cached in ``cache_dir`` (atomically, keyed by the recipe
    and the versions of the photos, OpenCV and scikit-learn).

    Parameters
    ----------
    scale : {"tiny", "demo", "paper"}, default="demo"
        ``"paper"``: 30,000 training regions (60,000 descriptors, 30,000 matching pairs),
        2,000 validation regions, 1,000 evaluation instances. ``"demo"``: 2,500, 300 and 400,
        for the demo's time budget. ``"tiny"``: a small 128-d version for tests.
    random_state : int, default=0
    max_keypoints : int, default=300
    cache_dir : str or os.PathLike, optional
        Default: ``$DEEPHASH_EXT_CACHE`` or ``~/.cache/deephash_ext``.
    verbose : bool, default=True
        Progress bars and the build time on stderr.

    Returns
    -------
    sklearn.utils.Bunch
        ``X_train`` float32 (2 * n_pair_regions, d); ``pairs_train`` int64 (n_pair_regions,
        2); ``X_val`` float32 (2 * n_val_regions, d); ``pairs_val`` int64 (n_val_regions *
        (1 + min(50, n_val_regions - 1)), 2), matching pairs first, and ``labels_val``
        int64 (1 matching, 0 not); ``X_query`` /
        ``y_query`` and ``X_db`` / ``y_db`` (instance ids); ``regions_train``,
        ``regions_val``, ``regions_eval`` int64 (photo, x0, y0, side), the photo an index
        into ``photo_role`` (int64, one per bundled photo: 0 training, 1 validation, 2
        evaluation); ``encoder``; ``photos_train``, ``photos_val`` and ``photos_eval``
        (file names); ``build_seconds``;
        ``description``; ``params``.

    Raises
    ------
    TypeError, ValueError
        If an argument is invalid (the message names it).
    ImportError
        If OpenCV or scikit-image is missing (``pip install 'deephash_ext[demo]'``).
    """
    if not isinstance(scale, str) or scale not in _SCALES:
        raise ValueError(f"scale must be one of {tuple(_SCALES)}, got {scale!r}")
    random_state = check_int(random_state, "random_state", minimum=0, maximum=2**32 - 1)
    max_keypoints = check_int(max_keypoints, "max_keypoints", minimum=1)
    verbose = check_bool(verbose, "verbose")
    cache_path_dir = (
        _default_cache_dir() if cache_dir is None else _check_path(cache_dir, "cache_dir")
    )
    _require_demo_packages("load_retrieval_benchmark")
    from sklearn.utils import Bunch

    params: dict[str, Any] = {
        "scale": scale,
        **_SCALES[scale],
        "random_state": random_state,
        "max_keypoints": max_keypoints,
        "role_area_shares": list(_ROLE_AREA_SHARES),
        "val_negatives": _VAL_NEGATIVES,
        "recipe_version": _BENCHMARK_RECIPE_VERSION,
    }
    paths = _photo_paths()
    if len(paths) < 3:  # one photo (scene) per role at least; _split_photos then gives each one
        raise RuntimeError("the benchmark needs at least three bundled photos")
    key = _recipe_key(params, paths)
    cache_path = cache_path_dir / f"benchmark_{scale}_{key[:20]}.npz"
    encoder_path = cache_path_dir / f"benchmark_{scale}_{key[:20]}_encoder.npz"
    cached = _read_cache(cache_path, key, _BENCHMARK_ARRAYS)
    encoder = None
    if cached is not None and encoder_path.is_file():
        try:
            encoder = FisherVectorEncoder.load(encoder_path)
        except ValueError:
            encoder = None
    if cached is None or encoder is None:
        cached, encoder = _build_benchmark(params, paths, verbose)
        arrays = {name: cached[name] for name in _BENCHMARK_ARRAYS}
        arrays["description"] = np.array(cached["description"])
        arrays["images"] = np.array(cached["images"])
        arrays["key"] = np.array(key)
        cache_path_dir.mkdir(parents=True, exist_ok=True)  # a fresh machine has none yet
        encoder.save(encoder_path)  # the encoder first: the arrays file marks the cache valid
        _write_npz_atomic(cache_path, arrays)
    images = cached["images"]
    return Bunch(
        **{name: cached[name] for name in _BENCHMARK_ARRAYS if name != "build_seconds"},
        build_seconds=float(cached["build_seconds"]),
        encoder=encoder,
        photos_train=[name for name, r in zip(images, cached["photo_role"]) if r == 0],
        photos_val=[name for name, r in zip(images, cached["photo_role"]) if r == 1],
        photos_eval=[name for name, r in zip(images, cached["photo_role"]) if r == 2],
        description=cached["description"],
        params=params,
    )


def _build_benchmark(
    params: dict[str, Any], paths: list[Path], verbose: bool
) -> tuple[dict[str, Any], FisherVectorEncoder]:
    from tqdm import tqdm

    started = time.perf_counter()
    seed, max_keypoints = params["random_state"], params["max_keypoints"]
    photos = [_read_gray(p) for p in paths]
    areas = np.array([p.shape[0] * p.shape[1] for p in photos], dtype=np.float64)
    photo_role = _split_photos([p.name for p in paths], areas, seed)
    # regions: a photo of the role uniformly (one large photo must not dominate a role),
    # then a region uniformly in it
    prob = [(photo_role == r) / max(1, int((photo_role == r).sum())) for r in range(3)]
    # (role, views, probabilities): one random stream per (seed, role, region)
    roles = {
        "train": (10, 2, prob[0], params["n_pair_regions"]),
        "val": (11, 2, prob[1], params["n_val_regions"]),
        "eval": (12, _EVAL_VIEWS, prob[2], params["n_eval"]),
    }
    tasks = [(role, i) for role, spec in roles.items() for i in range(spec[3])]

    def make(task: tuple[str, int]) -> tuple[np.ndarray, list[np.ndarray]]:
        tag, n_views, probabilities, _ = roles[task[0]]
        return _make_instance(photos, probabilities, n_views, (seed, tag, task[1]), max_keypoints)

    results: dict[str, list[tuple[np.ndarray, list[np.ndarray]]]] = {r: [] for r in roles}
    workers = max(1, min(4, os.cpu_count() or 1))
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(
            total=len(tasks),
            desc="SIFT (regions)",
            leave=False,
            file=sys.stderr,
            disable=not verbose,
        ) as bar,
    ):
        for (role, _), result in zip(tasks, pool.map(make, tasks)):  # in submission order
            results[role].append(result)
            bar.update(1)
    sift_done = time.perf_counter()

    def views(role: str, which: range) -> list[np.ndarray]:
        return [v[w] for _, v in results[role] for w in which]

    train_desc = views("train", range(2))
    encoder = FisherVectorEncoder(
        params["n_components"],
        params["pca_dims"],
        max_keypoints=max_keypoints,
        random_state=seed,
    ).fit_descriptors(train_desc)
    all_desc = (
        train_desc
        + views("val", range(2))
        + views("eval", range(1))
        + views("eval", range(1, _EVAL_VIEWS))
    )
    fvs = _fisher_vectors(encoder, all_desc, verbose)
    n_tr, n_val, n_eval = (
        2 * params["n_pair_regions"],
        2 * params["n_val_regions"],
        params["n_eval"],
    )
    regions = {
        role: np.array([r for r, _ in results[role]], dtype=np.int64).reshape(-1, 4)
        for role in roles
    }

    pairs_train = np.arange(n_tr, dtype=np.int64).reshape(-1, 2)
    matching = np.arange(n_val, dtype=np.int64).reshape(-1, 2)
    # Non-matching: view 0 of region i with view 1 of _VAL_NEGATIVES other regions, drawn
    # without replacement from the seeded stream (seed, 13).
    m = len(matching)
    n_other = min(_VAL_NEGATIVES, m - 1)
    draw = np.random.default_rng([seed, 13])
    others = [draw.choice(m - 1, size=n_other, replace=False) for _ in range(m)]
    other = np.array([np.where(o >= i, o + 1, o) for i, o in enumerate(others)], dtype=np.int64)
    non_matching = np.stack(
        [np.repeat(matching[:, 0], n_other), matching[other.reshape(-1), 1]], axis=1
    )
    pairs_val = np.concatenate([matching, non_matching])
    labels_val = np.concatenate([np.ones(m, np.int64), np.zeros(len(non_matching), np.int64)])
    eval_ids = np.arange(n_eval, dtype=np.int64)
    seconds = time.perf_counter() - started
    info = encoder.fit_info_
    description = (
        f"deephash_ext retrieval benchmark, scale {params['scale']!r}, recipe version "
        f"{params['recipe_version']}, random_state={seed}. Photos split by area: "
        f"{int((photo_role == 0).sum())} training, {int((photo_role == 1).sum())} validation, "
        f"{int((photo_role == 2).sum())} evaluation. "
        f"Training: {n_tr} descriptors of {n_tr // 2} regions (2 views each) and their "
        f"{len(pairs_train)} matching pairs; validation: {n_val} descriptors of regions of the "
        f"validation photos, {m} matching and {len(non_matching)} non-matching pairs; "
        f"evaluation: {n_eval} instances of the "
        f"evaluation photos, {_EVAL_VIEWS} views each (view 0 queries, views 1-4 database). "
        f"Fisher Vectors {params['n_components']} x {params['pca_dims']} = "
        f"{encoder.n_features_out_} dims, PCA and GMM on {info['n_sample']} training "
        f"descriptors ({'converged' if info['converged'] else 'not converged'} after "
        f"{info['n_iter']} EM iterations). SIFT {sift_done - started:.1f} s; built in "
        f"{seconds:.1f} s"
    )
    if verbose:
        print(f"deephash_ext: benchmark built in {seconds:.1f} s", file=sys.stderr)
    out: dict[str, Any] = {
        "X_train": fvs[:n_tr],
        "pairs_train": pairs_train,
        "X_val": fvs[n_tr : n_tr + n_val],
        "pairs_val": pairs_val,
        "labels_val": labels_val,
        "X_query": fvs[n_tr + n_val : n_tr + n_val + n_eval],
        "y_query": eval_ids,
        "X_db": fvs[n_tr + n_val + n_eval :],
        "y_db": np.repeat(eval_ids, _EVAL_VIEWS - 1),
        "regions_train": regions["train"],
        "regions_val": regions["val"],
        "regions_eval": regions["eval"],
        "photo_role": photo_role,
        "build_seconds": np.float64(seconds),
        "images": [p.name for p in paths],
        "description": description,
    }
    return out, encoder
