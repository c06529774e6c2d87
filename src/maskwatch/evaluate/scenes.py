"""Scene datasets: whole photos with one box per face, in YOLO or Pascal VOC format.

:func:`load_scenes` reads a folder in either standard layout (the format is detected from the files
present) and returns :class:`SceneImage` records with boxes in original-image pixels and labels mapped
onto maskwatch's classes (``with_mask`` / ``without_mask`` / ``mask_incorrect``):

* **YOLO**: ``images/NAME.jpg`` + ``labels/NAME.txt`` (lines ``class cx cy w h``, normalised to the
  image size) + ``classes.txt`` (one class name a line). Sub-folders (``images/train`` ->
  ``labels/train``) and label files beside the images also work. An image without a label file is a
  photo with no face (standard YOLO meaning). Normalised coordinates are converted with the size of
  the image as :func:`~maskwatch.io.images.decode_image` returns it (EXIF orientation applied), so the
  boxes line up with what the engine sees.
* **Pascal VOC**: ``Annotations/NAME.xml`` + ``JPEGImages/NAME.jpg``, or each ``.xml`` beside its
  image; ``<object><name>`` and ``<bndbox>`` with ``xmin ymin xmax ymax`` in pixels.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskwatch.errors import DataError
from maskwatch.io.images import decode_image, is_image_path

log = logging.getLogger(__name__)

#: maskwatch's labels, in the order used for metrics (``mask_incorrect``: a mask under the nose or on
#: the chin).
SCENE_CLASSES: tuple[str, ...] = ("with_mask", "without_mask", "mask_incorrect")
#: The two classes every maskwatch model has; ``map`` is their mean (``map_all`` adds mask_incorrect
#: where a dataset labels it).
MAIN_CLASSES: tuple[str, ...] = ("with_mask", "without_mask")

#: Dataset class names (lower-cased, ``-``/space read as ``_``) and the maskwatch label each means.
CLASS_ALIASES: dict[str, str] = {
    "mask": "with_mask",
    "with_mask": "with_mask",
    "withmask": "with_mask",
    "masked": "with_mask",
    "face_mask": "with_mask",
    "no_mask": "without_mask",
    "nomask": "without_mask",
    "without_mask": "without_mask",
    "withoutmask": "without_mask",
    "unmasked": "without_mask",
    "no_face_mask": "without_mask",
    "mask_incorrect": "mask_incorrect",
    "mask_weared_incorrect": "mask_incorrect",
    "mask_worn_incorrect": "mask_incorrect",
    "mask_worn_incorrectly": "mask_incorrect",
    "incorrect_mask": "mask_incorrect",
    "incorrectly_worn_mask": "mask_incorrect",
}



def _read_text(path: Path) -> str:
    """A dataset's text file (UTF-8, with or without a byte-order mark), or one clear :class:`DataError`."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise DataError(f"{path}: not a text file in UTF-8 (byte 0x{bad:02x} at position {exc.start}); "
                        "save the file as UTF-8.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}).") from None

@dataclass
class SceneImage:
    """One photo and its ground-truth faces.

    Attributes:
        path: the image file.
        boxes: ``(n, 4)`` float array of ``x1, y1, x2, y2`` in original-image pixels (EXIF applied).
        labels: ``n`` maskwatch labels (``with_mask`` / ``without_mask`` / ``mask_incorrect``), one per box.
        width / height: image size in pixels when known (``0`` if not read).
    """

    path: Path
    boxes: np.ndarray
    labels: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = list(self.labels)
        if len(self.labels) != len(self.boxes):
            raise ValueError(f"{self.path}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


def map_class_name(name: str, aliases: Mapping[str, str] | None = None, source: str = "") -> str:
    """Map a dataset class name onto a maskwatch label.

    Raises:
        DataError: the name is not one of the known spellings (the message lists them).
    """
    table = dict(CLASS_ALIASES if aliases is None else aliases)
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in table:
        return table[key]
    where = f"{source}: " if source else ""
    valid = ", ".join(sorted(table))
    raise DataError(
        f"{where}unknown class name {name!r}; a scene dataset's classes must each be one of: {valid} "
        f"(mapped onto {', '.join(SCENE_CLASSES)})."
    )


def detect_format(root: str | Path) -> str:
    """Return ``"yolo"`` or ``"voc"`` for a scene dataset folder.

    Raises:
        DataError: the folder does not exist or holds neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a scene dataset (YOLO or Pascal VOC).")
    if (root / "Annotations").is_dir() or any(root.glob("*.xml")):
        return "voc"
    if (root / "labels").is_dir() or (root / "classes.txt").is_file() or any(root.glob("*.txt")):
        return "yolo"
    if any(root.rglob("*.xml")):
        return "voc"
    raise DataError(
        f"{root}: neither a YOLO dataset (images/NAME.jpg + labels/NAME.txt + classes.txt) nor a "
        "Pascal VOC dataset (Annotations/NAME.xml + JPEGImages/NAME.jpg)."
    )


def load_scenes(
    root: str | Path,
    fmt: str = "auto",
    aliases: Mapping[str, str] | None = None,
) -> list[SceneImage]:
    """Load a scene dataset (YOLO or Pascal VOC; ``fmt="auto"`` detects which).

    Args:
        root: the dataset folder.
        fmt: ``"auto"``, ``"yolo"`` or ``"voc"``.
        aliases: dataset class name -> maskwatch label (default :data:`CLASS_ALIASES`).

    Returns:
        One :class:`SceneImage` per image, sorted by path.

    Raises:
        DataError: unknown layout, unknown class name, malformed label line or XML.
    """
    root = Path(root)
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt == "yolo":
        scenes = load_yolo(root, aliases)
    elif fmt == "voc":
        scenes = load_voc(root, aliases)
    else:
        raise DataError(f"unknown scene dataset format {fmt!r}; choose auto, yolo or voc.")
    n_boxes = sum(len(s) for s in scenes)
    log.info("%s: %s scene dataset, %d images, %d face boxes", root, fmt, len(scenes), n_boxes)
    return scenes


# --------------------------------------------------------------------------------------------- YOLO


def _yolo_class_names(root: Path) -> list[str]:
    for candidate in (root / "classes.txt", root / "labels" / "classes.txt", root / "obj.names"):
        if candidate.is_file():
            names = [ln.strip() for ln in _read_text(candidate).splitlines()]
            names = [n for n in names if n]
            if not names:
                raise DataError(f"{candidate}: empty; expected one class name a line.")
            return names
    raise DataError(
        f"{root}: no classes.txt; a YOLO scene dataset needs classes.txt with one class name a line "
        "(line 0 = class 0), e.g. 'no_mask' and 'mask'."
    )


#: How far a normalised YOLO coordinate may stray outside [0, 1] (label tools round) before it is an error.
_YOLO_SLACK = 0.01


def _check_yolo_box(where: str, cx: float, cy: float, bw: float, bh: float) -> None:
    """Refuse a YOLO box that cannot be a face box: not finite, empty or negative, or off the image."""
    if not all(np.isfinite(v) for v in (cx, cy, bw, bh)):
        raise DataError(f"{where}: box values must be finite numbers, got cx={cx} cy={cy} w={bw} h={bh}.")
    if bw <= 0 or bh <= 0:
        raise DataError(f"{where}: box width and height must be > 0, got w={bw} h={bh}.")
    lo, hi = -_YOLO_SLACK, 1 + _YOLO_SLACK
    if not (lo <= cx - bw / 2 and cx + bw / 2 <= hi and lo <= cy - bh / 2 and cy + bh / 2 <= hi):
        raise DataError(f"{where}: box (cx={cx} cy={cy} w={bw} h={bh}) lies outside the image; YOLO "
                        "coordinates are fractions of the image size, between 0 and 1.")


def _check_voc_box(where: str, box: list[float], width: int, height: int) -> None:
    """Refuse a VOC box that is not finite, inverted or empty, or (when the size is known) off the image."""
    x1, y1, x2, y2 = box
    if not all(np.isfinite(v) for v in box):
        raise DataError(f"{where}: bndbox values must be finite numbers, got {box}.")
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{where}: bndbox is empty or inverted (xmin={x1} ymin={y1} xmax={x2} ymax={y2}); "
                        "expected xmin < xmax and ymin < ymax.")
    if width and height:
        slack = 0.01 * max(width, height) + 1
        if x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack:
            raise DataError(f"{where}: bndbox ({x1}, {y1}, {x2}, {y2}) lies outside the {width}x{height} image.")


def _label_path_for(image: Path, root: Path) -> Path:
    """``root/images/a/b.jpg`` -> ``root/labels/a/b.txt``; an image elsewhere -> ``.txt`` beside it."""
    rel = image.relative_to(root)
    if rel.parts and rel.parts[0] == "images":
        return root.joinpath("labels", *rel.parts[1:]).with_suffix(".txt")
    return image.with_suffix(".txt")


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image as :func:`decode_image` returns it (EXIF orientation applied)."""
    h, w = decode_image(path).shape[:2]
    return w, h


def load_yolo(root: str | Path, aliases: Mapping[str, str] | None = None) -> list[SceneImage]:
    """Load a YOLO-format scene dataset (see the module docstring for the layout)."""
    root = Path(root)
    names = _yolo_class_names(root)
    labels_for_class = [map_class_name(n, aliases, source=f"{root}/classes.txt") for n in names]
    image_dir = root / "images" if (root / "images").is_dir() else root
    images = sorted(p for p in image_dir.rglob("*") if p.is_file() and is_image_path(p))
    if not images:
        raise DataError(f"{root}: YOLO dataset without images (expected images/NAME.jpg).")
    scenes = []
    n_unlabelled = 0
    for img in images:
        label_path = _label_path_for(img, root)
        rows: list[tuple[int, float, float, float, float]] = []
        if label_path.is_file():
            try:
                text = _read_text(label_path)
            except UnicodeDecodeError as exc:
                raise DataError(f"{label_path}: not a text file in UTF-8 (byte {exc.start}); expected YOLO "
                                "label lines 'class cx cy w h'.") from None
            for ln_no, line in enumerate(text.splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                where = f"{label_path}:{ln_no}"
                try:
                    kf = float(parts[0])
                    cx, cy, bw, bh = (float(v) for v in parts[1:5])
                    if len(parts) < 5:
                        raise ValueError
                except ValueError:
                    raise DataError(
                        f"{where}: expected 'class cx cy w h' (normalised), got {line.strip()!r}."
                    ) from None
                if not kf.is_integer():
                    raise DataError(
                        f"{where}: class id {parts[0]!r} is not a whole number; expected 0..{len(names) - 1}.")
                k = int(kf)
                if not 0 <= k < len(names):
                    raise DataError(
                        f"{where}: class {k} is not in classes.txt ({len(names)} names: "
                        f"{', '.join(names)})."
                    )
                _check_yolo_box(where, cx, cy, bw, bh)
                rows.append((k, cx, cy, bw, bh))
        else:
            n_unlabelled += 1
        width = height = 0
        boxes = np.zeros((0, 4))
        if rows:
            width, height = _image_size(img)
            arr = np.asarray([r[1:] for r in rows], dtype=np.float64)
            cx, cy = arr[:, 0] * width, arr[:, 1] * height
            bw, bh = arr[:, 2] * width, arr[:, 3] * height
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        scenes.append(SceneImage(img, boxes, [labels_for_class[r[0]] for r in rows], width, height))
    if n_unlabelled:
        log.warning("%s: %d of %d images have no label file; counted as photos without faces",
                    root, n_unlabelled, len(images))
    return scenes


# ---------------------------------------------------------------------------------------------- VOC


def _xml_text(node: ET.Element, tag: str, source: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(f"{source}: <{node.tag}> has no <{tag}>.")
    return child.text.strip()


def _voc_image_for(xml_path: Path, root: Path, filename: str | None) -> Path | None:
    stem_dirs = [root / "JPEGImages", root / "images", xml_path.parent, root]
    if filename:
        for d in stem_dirs:
            if (d / filename).is_file():
                return d / filename
    for d in stem_dirs:
        for p in sorted(d.glob(xml_path.stem + ".*")):
            if p.is_file() and is_image_path(p):
                return p
    return None


def load_voc(root: str | Path, aliases: Mapping[str, str] | None = None) -> list[SceneImage]:
    """Load a Pascal VOC scene dataset (``Annotations/*.xml`` + ``JPEGImages/``, or xml beside images).

    Box corners are taken as written (``xmin, ymin, xmax, ymax`` in pixels); objects marked
    ``<difficult>1</difficult>`` are kept like any other face.
    """
    root = Path(root)
    ann_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    xml_files = sorted(ann_dir.rglob("*.xml"))
    if not xml_files:
        raise DataError(f"{root}: Pascal VOC dataset without annotations (expected Annotations/NAME.xml).")
    scenes = []
    for xml_path in xml_files:
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            raise DataError(f"{xml_path}: not valid XML ({exc}).") from exc
        fn_node = tree.find("filename")
        filename = fn_node.text.strip() if fn_node is not None and fn_node.text else None
        img = _voc_image_for(xml_path, root, filename)
        if img is None:
            raise DataError(f"{xml_path}: image {filename or xml_path.stem!r} not found in JPEGImages/ or beside it.")
        boxes, labels = [], []
        for obj in tree.iter("object"):
            name = _xml_text(obj, "name", str(xml_path))
            labels.append(map_class_name(name, aliases, source=str(xml_path)))
            bnd = obj.find("bndbox")
            if bnd is None:
                raise DataError(f"{xml_path}: object {name!r} has no <bndbox>.")
            try:
                boxes.append([float(_xml_text(bnd, t, str(xml_path))) for t in ("xmin", "ymin", "xmax", "ymax")])
            except ValueError as exc:
                raise DataError(f"{xml_path}: object {name!r}: bndbox values must be numbers ({exc}).") from None
        width = height = 0
        size = tree.find("size")
        if size is not None:
            try:
                width = int(float(_xml_text(size, "width", str(xml_path))))
                height = int(float(_xml_text(size, "height", str(xml_path))))
            except (DataError, ValueError):
                width = height = 0
        for i, (box, name) in enumerate(zip(boxes, labels), 1):
            _check_voc_box(f"{xml_path}: object {i} ({name})", box, width, height)
        scenes.append(SceneImage(img, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels, width, height))
    return scenes


def load_scene_dataset(
    root: str | Path, fmt: str = "auto", aliases: Mapping[str, str] | None = None
) -> list[SceneImage]:
    """Alias of :func:`load_scenes` (the name :mod:`maskwatch.evaluate.runner` uses)."""
    return load_scenes(root, fmt=fmt, aliases=aliases)


def read_scene_list(path: str | Path) -> list[str]:
    """Image paths (relative to the dataset folder, ``/``-separated) of a scene split file: one a line,
    blank lines and ``#`` comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found; expected one image path a line (e.g. docs/splits/...).")
    out = []
    for line in _read_text(Path(path)).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line.replace("\\", "/"))
    return out


def write_scene_list(images: Sequence[SceneImage], root: str | Path, path: str | Path, header: str = "") -> None:
    """Write the images' paths relative to ``root`` into ``path`` (read back by :func:`read_scene_list`)."""
    lines = [f"# {ln}" for ln in header.splitlines()] + sorted(
        Path(im.path).relative_to(root).as_posix() for im in images)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def select_scenes(images: Sequence[SceneImage], root: str | Path, names: Sequence[str],
                  source: str = "split file") -> list[SceneImage]:
    """The images listed in ``names`` (paths relative to ``root``), in the list's order.

    Raises:
        DataError: a listed image is not in the dataset (wrong folder or stale list).
    """
    by_name = {Path(im.path).relative_to(root).as_posix(): im for im in images}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DataError(f"{source}: {len(missing)} listed image(s) are not in {root} (first: {missing[0]!r}); "
                        "is it the list for this dataset?")
    return [by_name[n] for n in names]
