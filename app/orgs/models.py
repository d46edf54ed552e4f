from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_column, id_column


class Institution(Base):
    """A mediation institution (调解中心) whose mediators handle cases."""

    __tablename__ = "institutions"

    id: Mapped[str] = id_column()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class Bank(Base):
    """A bank: the tenant whose staff see only its own cases."""

    __tablename__ = "banks"

    id: Mapped[str] = id_column()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The institution that mediates this bank's cases; None means the platform's default one.
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    created_at: Mapped[datetime] = created_column()
