"""The gallery store's tables (SQLAlchemy 2 declarative). Alembic migrations mirror these."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from facetrail.store import Base, utcnow


class GalleryRecord(Base):
    """An authorized gallery and the provenance sources it accepts."""

    __tablename__ = "galleries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    allowed_sources: Mapped[list[str]]
    version: Mapped[int] = mapped_column(Integer, default=0)
    """Incremented by every committed change to the gallery's templates; the index file records it."""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    subjects: Mapped[list[SubjectRecord]] = relationship(back_populates="gallery", cascade="all, delete-orphan")


class SubjectRecord(Base):
    """A person in a gallery, known by an external id such as a booking or person number."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("gallery_id", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    gallery: Mapped[GalleryRecord] = relationship(back_populates="subjects")
    images: Mapped[list[ImageRecord]] = relationship(back_populates="subject", cascade="all, delete-orphan")


class ImageRecord(Base):
    """An enrolled photograph, with its provenance."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("gallery_id", "content_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the file's bytes, hex."""
    original_name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(100))
    capture_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)

    subject: Mapped[SubjectRecord] = relationship(back_populates="images")
    template: Mapped[TemplateRecord] = relationship(back_populates="image", cascade="all, delete-orphan")


class TemplateRecord(Base):
    """The face template of an enrolled image; its id is the key in the gallery's vector index."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(Text)
    augmentation: Mapped[str] = mapped_column(String(20))
    precision: Mapped[str] = mapped_column(String(10), server_default="float32")
    """The arithmetic of the network that computed it: "float32", or "int8" (within a stated bound of float32's,
    docs/model.md)."""
    face_box: Mapped[list[int]] = mapped_column(JSON)
    """[left, top, width, height] in the original image."""
    detector: Mapped[str] = mapped_column(String(20))
    quality: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    image: Mapped[ImageRecord] = relationship(back_populates="template")


class RejectionRecord(Base):
    """An image refused at enrolment, kept so a rerun does not process it again and the report can list it."""

    __tablename__ = "rejections"
    __table_args__ = (UniqueConstraint("gallery_id", "content_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    original_name: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    rejected_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CalibrationRecord(Base):
    """A calibration table (``engine.calibration``) as made, never changed: from labelled photographs for a model
    ('photographs'), from a gallery's own subjects ('gallery') or for one group of people ('group'). The latest of
    each kind is in force; searches record the ones they used."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(100), index=True)
    scope: Mapped[str] = mapped_column(String(20))
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"), nullable=True, index=True)
    gallery_name: Mapped[str] = mapped_column(String(100), default="")
    group_name: Mapped[str] = mapped_column(String(100), default="")
    impostor_pairs: Mapped[int] = mapped_column(BigInteger)
    subjects: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """A gallery's own: its subjects compared (one photograph each)."""
    excluded_pairs: Mapped[int] = mapped_column(BigInteger, default=0)
    """Sampled pairs left out as likely one person under two ids (closer than calibration.duplicate_distance)."""
    source: Mapped[str] = mapped_column(Text)
    table_sha256: Mapped[str] = mapped_column(String(64))
    table: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
