"""Galleries' vector indexes in Milvus (``index.backend = "milvus"``): one index service for many processes and
machines, so that API processes hold no index of their own.

Two collections (names from ``index.milvus_collection``):

- ``facetrail_templates``: one row per template of every gallery: ``template_id`` (the store's id, the primary
  key), ``gallery_id`` (the partition key: a search is filtered to one gallery and touches only its partition) and
  ``vector`` (the float32 template);
- ``facetrail_templates_versions``: one row per gallery: the gallery version (in the SQL store) whose templates
  the first collection holds, and their dimension.

A change is applied as the faiss backend's is, the version row standing for its MANIFEST: a writer commits to the
store, deletes and inserts the change's rows in Milvus, and only then writes the version row (the commit point).
Killed anywhere in between, the version row still names the previous version, so every process sees the index
as behind the store and the next writer (or a search when no writer is at work) brings it to the store from the
difference of template ids, as with the faiss backend.  Every read uses ``consistency_level="Strong"``: it sees
every write acknowledged before it.  Expungement deletes the rows (a deleted row is never returned from then on)
and asks Milvus to compact, which rewrites the segments without them (see docs/scaling.md for what stays on the
server's storage and for how long).

Milvus selects candidates with its own index (``index.milvus_index``); facetrail re-scores ``index.rerank`` of
them against their float32 templates, so distances are exact Euclidean distances, as with the faiss backend
(Milvus's L2 metric is the squared distance).  The audit mode reads every template of the gallery.

Every Milvus error becomes an IndexServiceError naming what was being done and, where the client's words hide it,
why: the server unreachable (a search is then refused, and audited as such, like any refusal), the credentials
refused, or a privilege missing. Tested against milvus-lite and a Milvus 2.3.5 server (docs/scaling.md).

Milvus stores templates unencrypted: see docs/scaling.md for what that means and what to do about it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client.types import Status

from facetrail.config import IndexConfig
from facetrail.errors import GalleryError
from facetrail.gallery.index import (ExactScan, _as_float_rows, _as_ids, _positive_int, _sample, checked_addition,
                                     empty_results, rerank_into)

STRONG = "Strong"
MAX_TOP_K = 16_384
"""Most results one Milvus search returns."""
_BATCH = 8_192
"""Rows (or ids in a filter) sent to or read from Milvus in one request."""
_PLACEHOLDER_DIMENSION = 2
"""Milvus needs a vector field in every collection; the versions collection's is unused."""


_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_CAUSES = {
    grpc.StatusCode.UNAVAILABLE: "the server is unreachable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the server is unreachable (no answer in time)",
    grpc.StatusCode.UNAUTHENTICATED: "the server refused the credentials (index.milvus_user and its password, or the "
                                     "token)",
    grpc.StatusCode.PERMISSION_DENIED: "facetrail's Milvus user lacks a privilege (docs/scaling.md lists those it needs)",
}
"""Plain words for the gRPC status codes whose cause the client's message does not say."""


class IndexServiceError(GalleryError):
    """Milvus could not be reached, refused the credentials, or refused a request."""


class MilvusBackend:
    """``index.backend = "milvus"``: every gallery's index in one Milvus collection. One per process, shared by its
    galleries; it connects on first use."""

    uses_data_key = False
    shared = True

    def __init__(self, config: IndexConfig, data_root: Path | None = None) -> None:
        """``data_root`` resolves a relative milvus-lite file name (``index.milvus_uri = "milvus.db"``)."""
        self.config = config
        self.uri = config.milvus_uri
        if "://" not in self.uri and data_root is not None and not Path(self.uri).is_absolute():
            self.uri = str(data_root / self.uri)
        self.templates = config.milvus_collection
        self.versions = f"{config.milvus_collection}_versions"
        self._client: MilvusClient | None = None
        self._dimension: int | None = None
        self._lock = threading.RLock()  # close() may run while connecting

    @property
    def client(self) -> MilvusClient:
        """The connection, made (and the collections loaded) on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> MilvusClient:
        config = self.config
        arguments: dict = {"uri": self.uri}
        if config.milvus_user:
            arguments.update(user=config.milvus_user, password=config.milvus_secret("password"))
        elif config.milvus_token or config.milvus_token_env:
            arguments["token"] = config.milvus_secret("token")
        if config.milvus_database:
            arguments["db_name"] = config.milvus_database
        if config.milvus_ca_file:
            arguments.update(server_pem_path=config.milvus_ca_file, secure=True)
        with self.reported(f"connecting to {self.uri}"):
            client = MilvusClient(**arguments)
            for name in (self.templates, self.versions):
                if client.has_collection(name):
                    client.load_collection(name)
        return client

    # --- the VectorIndex factory -------------------------------------------------------

    def open(self, gallery_id: int) -> MilvusIndex | None:
        """The gallery's index, or None when the versions collection has no row for it."""
        row = self._version_row(gallery_id)
        return None if row is None else MilvusIndex(self, gallery_id, int(row["dimension"]), int(row["version"]))

    def create(self, gallery_id: int, dimension: int, version: int) -> MilvusIndex:
        """An empty index for the gallery at ``version``, replacing any rows it had (hold the gallery's write lock)."""
        self._ensure_collections(_positive_int(dimension, "dimension"))
        self.drop(gallery_id)
        self.write_version(gallery_id, dimension, version)
        return MilvusIndex(self, gallery_id, dimension, version)

    def drop(self, gallery_id: int) -> None:
        """Delete the gallery's version row, then its templates (a crash in between leaves a gallery without an
        index, which is rebuilt from the store), and compact."""
        client = self.client
        with self.reported(f"deleting the index of gallery {gallery_id}"):
            if client.has_collection(self.versions):
                client.delete(self.versions, ids=[int(gallery_id)])
            if client.has_collection(self.templates):
                client.delete(self.templates, filter=f"gallery_id == {int(gallery_id)}")
                client.compact(self.templates)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @contextmanager
    def reported(self, what: str) -> Iterator[None]:
        """Turn a Milvus client error into an IndexServiceError naming what was being done and, in plain words, the
        cause when the client's own words hide it: an unreachable server (down, restarting, or the network: the
        connection is then dropped, so that the next request connects afresh at once instead of waiting out the
        client's reconnection backoff), refused credentials, or a privilege facetrail's Milvus user lacks."""
        try:
            yield
        except (MilvusException, grpc.RpcError) as exc:
            rpc = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
            code = rpc.code() if isinstance(rpc, grpc.Call) else None
            if isinstance(exc, MilvusException) and exc.code == Status.CONNECT_FAILED and code is None:
                code = grpc.StatusCode.UNAVAILABLE
            if code in _UNREACHABLE:
                self.close()
            if isinstance(exc, MilvusException):
                words = exc.message or str(exc)
            else:
                words = rpc.details() if isinstance(rpc, grpc.Call) else str(exc)
            cause = f"{_CAUSES[code]}: " if code in _CAUSES else ""
            raise IndexServiceError(f"Milvus: {what}: {cause}{words}") from None

    # --- collections ---------------------------------------------------------------------

    def _ensure_collections(self, dimension: int) -> None:
        """Create the two collections if missing; IndexServiceError if the templates collection holds templates of
        another dimension."""
        client = self.client
        with self.reported(f"creating the collections {self.templates} and {self.versions}"):
            if not client.has_collection(self.templates):
                schema = client.create_schema(auto_id=False, enable_dynamic_field=False,
                                              description="facetrail templates: one row per template, by gallery")
                schema.add_field("template_id", DataType.INT64, is_primary=True)
                schema.add_field("gallery_id", DataType.INT64, is_partition_key=True)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
                index = client.prepare_index_params()
                index.add_index("vector", index_type=self.config.milvus_index, metric_type="L2", params=self._build_params())
                self._create(self.templates, schema, index)
            if not client.has_collection(self.versions):
                schema = client.create_schema(auto_id=False, enable_dynamic_field=False,
                                              description=f"facetrail: the gallery version {self.templates} holds")
                schema.add_field("gallery_id", DataType.INT64, is_primary=True)
                schema.add_field("version", DataType.INT64)
                schema.add_field("dimension", DataType.INT64)
                schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=_PLACEHOLDER_DIMENSION)
                index = client.prepare_index_params()
                index.add_index("placeholder", index_type="FLAT", metric_type="L2")
                self._create(self.versions, schema, index)
        held = self.dimension()
        if held != dimension:
            raise IndexServiceError(f"Milvus collection {self.templates} holds {held}-d templates, not {dimension}-d: "
                                    "set index.milvus_collection to another collection for this model")

    def _create(self, name: str, schema, index) -> None:
        try:
            self.client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG)
        except MilvusException:
            if not self.client.has_collection(name):  # else another process created it first
                raise

    def dimension(self) -> int:
        """The dimension of the templates collection's vectors."""
        if self._dimension is None:
            with self.reported(f"describing {self.templates}"):
                fields = self.client.describe_collection(self.templates)["fields"]
            self._dimension = int(next(f["params"]["dim"] for f in fields if f["name"] == "vector"))
        return self._dimension

    def _build_params(self) -> dict:
        if self.config.milvus_index.startswith("IVF"):
            return {"nlist": self.config.milvus_nlist}
        if self.config.milvus_index == "HNSW":
            return {"M": 16, "efConstruction": 200}
        return {}

    def search_params(self, limit: int) -> dict:
        """Milvus search parameters for ``limit`` candidates under ``index.milvus_index``."""
        if self.config.milvus_index.startswith("IVF"):
            return {"metric_type": "L2", "params": {"nprobe": min(self.config.nprobe, self.config.milvus_nlist)}}
        if self.config.milvus_index == "HNSW":
            return {"metric_type": "L2", "params": {"ef": max(limit, 64)}}
        return {"metric_type": "L2"}

    # --- version rows ----------------------------------------------------------------------

    def _version_row(self, gallery_id: int) -> dict | None:
        client = self.client
        with self.reported(f"reading the index version of gallery {gallery_id}"):
            if not client.has_collection(self.versions):
                return None
            rows = client.query(self.versions, filter=f"gallery_id == {int(gallery_id)}",
                                output_fields=["version", "dimension"], consistency_level=STRONG)
        return rows[0] if rows else None

    def write_version(self, gallery_id: int, dimension: int, version: int) -> None:
        """Record that the templates collection holds the gallery at ``version`` (the commit point of a change)."""
        row = {"gallery_id": int(gallery_id), "version": int(version), "dimension": int(dimension),
               "placeholder": [0.0] * _PLACEHOLDER_DIMENSION}
        with self.reported(f"writing the index version of gallery {gallery_id}"):
            self.client.upsert(self.versions, [row])


class MilvusIndex:
    """One gallery's index in Milvus: a view of its partition of the templates collection and its version row.

    Holds no templates in memory; ``version`` is the version row as last read (``refresh`` reads it again).
    Searches may run on any thread; ``apply`` is called by the one writer (the gallery's write lock).
    """

    def __init__(self, backend: MilvusBackend, gallery_id: int, dimension: int, version: int) -> None:
        """Use ``MilvusBackend.open`` or ``create``."""
        self.backend = backend
        self.gallery_id = int(gallery_id)
        self.dimension = dimension
        self._version = version
        self._filter = f"gallery_id == {self.gallery_id}"

    @property
    def version(self) -> int:
        return self._version

    inverted_lists = None
    """Milvus trains each of its segments' indexes itself, as segments are sealed: none to outgrow here."""
    outgrown = False

    def retrained(self, force: bool = False) -> None:
        """Nothing to retrain (``inverted_lists``)."""
        return None

    def refresh(self) -> None:
        """Read the version row again (another process's changes); IndexServiceError if it is gone."""
        row = self.backend._version_row(self.gallery_id)
        if row is None:
            raise IndexServiceError(f"Milvus: the index of gallery {self.gallery_id} has disappeared from "
                                    f"{self.backend.versions}")
        self._version = int(row["version"])

    def close(self) -> None:
        """Nothing to release: the connection is the backend's."""

    # --- writing ------------------------------------------------------------------------

    def apply(self, version: int, add: tuple[np.ndarray, np.ndarray] | None = None, remove: np.ndarray | None = None) -> int:
        """Make a committed change durable and hold ``version``; returns how many of ``remove`` were present.

        ``add`` is (ids, vectors) of new templates (an id already present refuses the whole change); ``remove``
        lists ids to expunge (absent ones are ignored).  Hold the gallery's write lock.
        """
        add_ids, add_vectors = checked_addition(add, self.dimension)
        already = self._present(add_ids)
        if len(already):
            raise ValueError(f"ids already in the index: {_sample(already)}")
        removing = self._present(np.unique(_as_ids(remove if remove is not None else np.empty(0, dtype=np.int64))))
        client, name = self.backend.client, self.backend.templates
        with self.backend.reported(f"applying version {version} of gallery {self.gallery_id}"):
            for start in range(0, len(removing), _BATCH):
                client.delete(name, filter=f"{self._filter} and template_id in {removing[start : start + _BATCH].tolist()}")
            for start in range(0, len(add_ids), _BATCH):
                client.insert(name, [
                    {"template_id": template_id, "gallery_id": self.gallery_id, "vector": vector}
                    for template_id, vector in zip(add_ids[start : start + _BATCH].tolist(), add_vectors[start : start + _BATCH])
                ])
            if len(removing):
                client.compact(name)
        self.backend.write_version(self.gallery_id, self.dimension, version)
        self._version = version
        return len(removing)

    # --- reading ------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids), each (nq, k), nearest first, padded with +inf / -1.

        Milvus selects ``max(k, index.rerank)`` candidates, which are re-scored exactly against their float32
        templates; ``exact`` (the audit mode) instead reads every template of the gallery.
        """
        queries = _as_float_rows(queries, self.dimension, "queries")
        k = _positive_int(k, "k")
        if k > MAX_TOP_K:
            raise ValueError(f"k must be at most {MAX_TOP_K} with the Milvus backend, got {k}")
        if exact:
            scan = ExactScan(queries, k)
            for ids, vectors in self._rows(with_vectors=True):
                scan.add(ids, vectors)
            return scan.result()
        distances, labels = empty_results(len(queries), k)
        if not len(queries):
            return distances, labels
        limit = min(max(k, self.backend.config.rerank), MAX_TOP_K)
        with self.backend.reported(f"searching gallery {self.gallery_id}"):
            results = self.backend.client.search(
                self.backend.templates, data=list(queries), anns_field="vector", limit=limit, filter=self._filter,
                output_fields=["template_id", "vector"], search_params=self.backend.search_params(limit), consistency_level=STRONG)
        for row, (query, hits) in enumerate(zip(queries, results)):  # template_id asked for: a 2.3 server calls it "id"
            if len(hits):
                found = np.array([hit["template_id"] for hit in hits], dtype=np.int64)
                vectors = np.array([hit["entity"]["vector"] for hit in hits], dtype=np.float32)
                rerank_into(distances[row], labels[row], query, found, vectors)
        return distances, labels

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The float32 templates of ``ids`` (KeyError if one is not in the index)."""
        ids = _as_ids(ids)
        by_id = {row["template_id"]: row["vector"] for row in self._rows_of(ids, ["template_id", "vector"])}
        missing = [i for i in ids.tolist() if i not in by_id]
        if missing:
            raise KeyError(f"asked for the template of ids not in the index: {missing[:5]}")
        return np.array([by_id[i] for i in ids.tolist()], dtype=np.float32).reshape(len(ids), self.dimension)

    def __len__(self) -> int:
        with self.backend.reported(f"counting the templates of gallery {self.gallery_id}"):
            rows = self.backend.client.query(self.backend.templates, filter=self._filter, output_fields=["count(*)"],
                                             consistency_level=STRONG)
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        """All template ids of the gallery, ascending (reads the whole partition: for recovery, not for searches)."""
        parts = [ids for ids, _ in self._rows(with_vectors=False)]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def _rows(self, with_vectors: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The gallery's (ids, vectors or None) in blocks, at one snapshot."""
        fields = ["template_id", "vector"] if with_vectors else ["template_id"]
        with self.backend.reported(f"reading the templates of gallery {self.gallery_id}"):
            iterator = self.backend.client.query_iterator(self.backend.templates, batch_size=_BATCH, filter=self._filter,
                                                          output_fields=fields, consistency_level=STRONG)
            try:
                while rows := iterator.next():
                    ids = np.array([row["template_id"] for row in rows], dtype=np.int64)
                    vectors = np.array([row["vector"] for row in rows], dtype=np.float32) if with_vectors else None
                    yield ids, vectors
            finally:
                iterator.close()

    def _present(self, ids: np.ndarray) -> np.ndarray:
        """Those of ``ids`` that the gallery's partition holds, ascending."""
        return np.array(sorted(row["template_id"] for row in self._rows_of(ids, ["template_id"])), dtype=np.int64)

    def _rows_of(self, ids: np.ndarray, fields: list[str]) -> list[dict]:
        """The gallery's rows (``fields`` of them) whose template ids are among ``ids``."""
        rows: list[dict] = []
        with self.backend.reported(f"looking up templates of gallery {self.gallery_id}"):
            for start in range(0, len(ids), _BATCH):
                rows.extend(self.backend.client.query(
                    self.backend.templates, filter=f"{self._filter} and template_id in {ids[start : start + _BATCH].tolist()}",
                    output_fields=fields, consistency_level=STRONG))
        return rows
