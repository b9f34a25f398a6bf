"""The service's tables: events, and their counts per kind (written by the scheduled rollup)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "svc_port_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(100), index=True)


class Rollup(Base):
    __tablename__ = "svc_port_rollups"

    kind: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int]
