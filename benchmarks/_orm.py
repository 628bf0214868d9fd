"""The SQLAlchemy 2 ORM twin of BenchTodo: what a user would otherwise pick."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class OrmTodo(Base):
    """The same fields as BenchTodo, tags as a JSON column, and the same
    optimistic-concurrency version column (SQLAlchemy's version_id_col)."""

    __tablename__ = "orm_todo"

    id: Mapped[str] = mapped_column(sa.String, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    title: Mapped[str] = mapped_column(sa.String, nullable=False)
    done: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    priority: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    tags: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False)
    created: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's API


def engine(path: str) -> sa.Engine:
    """A file engine with the pragmas statekeep uses (WAL, synchronous=NORMAL),
    so the comparison is of the libraries, not of the durability settings."""
    eng = sa.create_engine(f"sqlite:///{path}")

    @event.listens_for(eng, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    Base.metadata.create_all(eng)
    return eng


def copy_stored(engine: sa.Engine) -> None:
    """The entities statekeep stored in bench_todo, as the ORM's rows, in the
    same schema (PostgreSQL), both tables analyzed: the ORM reads the same data."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE orm_todo"))
        conn.execute(
            sa.text(
                "INSERT INTO orm_todo (id, version, title, done, priority, tags, created) "
                "SELECT id, version, body->>'title', (body->>'done')::boolean, "
                "(body->>'priority')::integer, (body->'tags')::json, "
                "(body->>'created')::timestamp FROM bench_todo"
            )
        )
        conn.execute(sa.text("ANALYZE orm_todo"))
        conn.execute(sa.text("ANALYZE bench_todo"))


def objects(rows: list[dict[str, Any]], ids: list[str]) -> list[OrmTodo]:
    return [OrmTodo(id=id, **row) for id, row in zip(ids, rows, strict=True)]


def postgres_engine(url: str, schema: str) -> sa.Engine:
    """An engine on psycopg 3 (`postgresql+psycopg://`) whose tables live in
    schema (the benchmark run's own), with the mapped table created."""
    address = sa.engine.make_url(url).set(drivername="postgresql+psycopg")
    eng = sa.create_engine(address, connect_args={"options": f"-c search_path={schema}"})
    Base.metadata.create_all(eng)
    return eng
