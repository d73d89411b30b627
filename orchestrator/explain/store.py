"""The mask store: LIME explanations as a Parquet data set, keyed by what produced them.

``<root>/explanations/<key>/`` holds ``_manifest.json`` (the key in full; the
underscore keeps Parquet readers such as ``pandas.read_parquet(folder)`` from
taking it for data) and one
``part-*.parquet`` file per finished chunk of images. A part is written whole
(temporary name, then rename), so a crash never leaves half a part, and a restarted
run skips every image some part already holds. The key is data set, split, a hash
of the checkpoint file and a hash of the LIME settings: asking again for the same
explanations reads the store instead of recomputing them.

A row holds what rebuilds every flag mask (segments and signed segment weights),
so the spurious strategy and ratio can change without explaining again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from methods.lime import Explanation, LimeSettings, flagged_mask
from orchestrator.storage import as_uri

__all__ = ["SCHEMA", "MaskStore", "StoreKey", "explanations_table", "file_digest"]

SCHEMA = pa.schema(
    [
        ("image_index", pa.int64()),
        ("label", pa.int64()),  # true label
        ("target", pa.int64()),  # explained class
        ("predicted", pa.int64()),  # model's class on the clean image
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("segments", pa.list_(pa.int16())),  # row-major (H*W,) segment ids 0..S-1
        ("weights", pa.list_(pa.float64())),  # (S,) signed surrogate weights
        ("intercept", pa.float64()),
        ("score", pa.float64()),  # weighted R^2 of the surrogate
    ]
)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (a checkpoint's identity in store keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoreKey:
    dataset: str
    split: str
    checkpoint_sha256: str
    settings: LimeSettings  # resolved (no "auto")
    explain_label: str = "true"  # "true": each image's label; "predicted": the model's class

    @property
    def name(self) -> str:
        name = f"{self.dataset}-{self.split}-{self.checkpoint_sha256[:12]}-{self.settings.digest()}"
        # Keys of true-label explanations keep the names stores already hold.
        return name if self.explain_label == "true" else f"{name}-{self.explain_label}"

    def to_dict(self) -> dict:
        return {**asdict(self), "settings": asdict(self.settings)}


def explanations_table(
    indices: Iterable[int], labels: Iterable[int], explanations: Iterable[Explanation]
) -> pa.Table:
    """Rows for the store, one per explanation."""
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    for index, label, explanation in zip(indices, labels, explanations, strict=True):
        height, width = explanation.segments.shape
        columns["image_index"].append(int(index))
        columns["label"].append(int(label))
        columns["target"].append(explanation.target)
        columns["predicted"].append(explanation.predicted)
        columns["height"].append(height)
        columns["width"].append(width)
        columns["segments"].append(explanation.segments.reshape(-1).astype(np.int16))
        columns["weights"].append(np.asarray(explanation.weights, dtype=np.float64))
        columns["intercept"].append(explanation.intercept)
        columns["score"].append(explanation.score)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


class MaskStore:
    """One key's explanations under ``root`` (a local path or a pyarrow URI, e.g. s3://)."""

    def __init__(self, root: str | Path, key: StoreKey) -> None:
        self.key = key
        self.fs, base = pafs.FileSystem.from_uri(as_uri(root))
        self.path = f"{base.rstrip('/')}/explanations/{key.name}"

    @property
    def uri(self) -> str:
        return (
            self.path
            if isinstance(self.fs, pafs.LocalFileSystem)
            else f"{self.fs.type_name}://{self.path}"
        )

    def _parts(self) -> list[str]:
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.base_name.startswith("part-") and info.base_name.endswith(".parquet")
        )

    def read(self) -> pa.Table:
        """All rows, one per image (a duplicate from a concurrent writer is dropped)."""
        parts = self._parts()
        if not parts:
            return SCHEMA.empty_table()
        table = pa.concat_tables(pq.read_table(p, filesystem=self.fs, schema=SCHEMA) for p in parts)
        _, first = np.unique(table.column("image_index").to_numpy(), return_index=True)
        return table.take(pa.array(np.sort(first))).sort_by("image_index")

    def done(self) -> set[int]:
        """Image indices the store already holds."""
        parts = self._parts()
        if not parts:
            return set()
        indices = pa.concat_tables(
            pq.read_table(p, filesystem=self.fs, columns=["image_index"]) for p in parts
        )
        return set(indices.column("image_index").to_pylist())

    def write(self, table: pa.Table) -> None:
        """Add a part atomically; writes the manifest with the first part."""
        self.fs.create_dir(self.path, recursive=True)
        manifest = f"{self.path}/_manifest.json"
        if self.fs.get_file_info(manifest).type == pafs.FileType.NotFound:
            with self.fs.open_output_stream(manifest) as out:
                out.write(json.dumps(self.key.to_dict(), indent=2).encode())
        indices = table.column("image_index").to_numpy()
        name = f"part-{indices.min():08d}-{len(indices):05d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = f"{self.path}/.{name}.tmp"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, f"{self.path}/{name}")

    def explanations(self) -> dict[int, Explanation]:
        """Image index -> ``Explanation`` for every stored row."""
        out = {}
        for row in self.read().to_pylist():
            segments = np.asarray(row["segments"], dtype=np.int32).reshape(
                row["height"], row["width"]
            )
            out[row["image_index"]] = Explanation(
                segments,
                np.asarray(row["weights"]),
                row["intercept"],
                row["score"],
                row["target"],
                row["predicted"],
            )
        return out

    def masks(self, strategy: str, ratio: float) -> dict[int, np.ndarray]:
        """Image index -> (H, W) bool mask of the segments ``strategy`` flags at ``ratio``."""
        return {i: flagged_mask(e, strategy, ratio) for i, e in self.explanations().items()}
