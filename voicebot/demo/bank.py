"""Acme Bank's demo backend: customers, balances, cards, branches and service requests in SQLite.

Money is integer cents throughout. Every operation opens its own connection, so one `AcmeBank` can be
shared by calls running concurrently in threads; writes take SQLite's write lock up front
(BEGIN IMMEDIATE) so a transfer's balance check and update cannot interleave with another's.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any

from voicebot.dialogue.lockout import AccountAttempts, Change

ACCOUNT_TYPES = ("checking", "savings", "credit")
CARD_TYPES = ("debit", "credit")

# Product facts the IVR reads out; rates in basis points (425 = 4.25%).
RATES_BASIS_POINTS = {"savings": 425, "personal_loan": 899, "auto_loan": 649, "mortgage": 675}
MINIMUM_OPENING_DEPOSIT_CENTS = 2_500
ACCOUNT_OPENING_DOCUMENTS = ("a government-issued photo ID", "proof of address")

PIN_HASH_ITERATIONS = 200_000
_BUSY_TIMEOUT_S = 10.0
_FIRST_REQUEST_REFERENCE = 100_000  # references are request ids offset to a fixed width

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    account_number TEXT PRIMARY KEY CHECK (length(account_number) = 8),
    holder_name TEXT NOT NULL,
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    pin_salt BLOB NOT NULL,
    pin_hash BLOB NOT NULL,
    pin_iterations INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    account_number TEXT NOT NULL REFERENCES customers(account_number),
    account_type TEXT NOT NULL CHECK (account_type IN ('checking', 'savings', 'credit')),
    balance_cents INTEGER NOT NULL,
    PRIMARY KEY (account_number, account_type)
);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_number TEXT NOT NULL REFERENCES customers(account_number),
    account_type TEXT NOT NULL,
    posted_on TEXT NOT NULL,
    description TEXT NOT NULL,
    amount_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cards (
    account_number TEXT NOT NULL REFERENCES customers(account_number),
    card_type TEXT NOT NULL CHECK (card_type IN ('debit', 'credit')),
    last4 TEXT NOT NULL CHECK (length(last4) = 4),
    status TEXT NOT NULL CHECK (status IN ('active', 'blocked')),
    PRIMARY KEY (account_number, card_type)
);
CREATE TABLE IF NOT EXISTS branches (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    area TEXT NOT NULL,
    address TEXT NOT NULL,
    is_main INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS branch_hours (
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    opens TEXT NOT NULL,
    closes TEXT NOT NULL,
    PRIMARY KEY (branch_id, weekday)
);
CREATE TABLE IF NOT EXISTS service_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_number TEXT NOT NULL REFERENCES customers(account_number),
    kind TEXT NOT NULL,
    details TEXT NOT NULL,
    created_on TEXT NOT NULL
);
-- Identification attempts of every call (voicebot/dialogue/lockout.py), by a hash of the account
-- given (which need not be a customer's); times are Unix seconds.
CREATE TABLE IF NOT EXISTS identification_attempts (
    account_key TEXT PRIMARY KEY,
    attempts TEXT NOT NULL,
    locked_until REAL NOT NULL,
    forget_after REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS identification_attempts_forget ON identification_attempts (forget_after);
"""
_TABLES = (
    "identification_attempts",
    "service_requests",
    "branch_hours",
    "branches",
    "cards",
    "transactions",
    "balances",
    "customers",
)


class BusinessRuleError(Exception):
    """A request the bank refuses for a business reason; `code` doubles as the prompt id to speak."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Transaction:
    id: int
    account_type: str
    posted_on: date
    description: str  # the counterparty, e.g. "Grocery Mart" or "your savings account"
    amount_cents: int  # negative for money leaving the account


@dataclass(frozen=True)
class Card:
    card_type: str
    last4: str  # all the bank keeps of the card number
    status: str  # "active" or "blocked"


@dataclass(frozen=True)
class Branch:
    name: str
    area: str
    address: str
    hours: tuple[tuple[int, time, time], ...]  # (weekday 0=Monday, opens, closes); closed days absent


@dataclass(frozen=True)
class ServiceRequest:
    reference: str
    kind: str
    details: dict[str, Any]
    created_on: date


_TRANSACTION_COLUMNS = "id, account_type, posted_on, description, amount_cents"


def _transaction(row: sqlite3.Row) -> Transaction:
    id_, account_type, posted_on, description, amount_cents = row
    return Transaction(id_, account_type, date.fromisoformat(posted_on), description, amount_cents)


def _hash_pin(pin: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)


def _connect(db_path: Path) -> sqlite3.Connection:
    # Autocommit mode: writes open their transactions explicitly in `_writing`.
    connection = sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    connection.execute("PRAGMA foreign_keys = ON")
    connection.row_factory = sqlite3.Row
    return connection


@contextmanager
def _reading(db_path: Path) -> Iterator[sqlite3.Connection]:
    connection = _connect(db_path)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def _writing(db_path: Path) -> Iterator[sqlite3.Connection]:
    """One atomic write transaction: committed on success, rolled back on any exception."""
    with _reading(db_path) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


def _create_schema(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _reading(db_path) as connection:
        # WAL lets calls read while another call writes; the mode is stored in the file.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(_SCHEMA)


def _normalise_place(text: str) -> str:
    words = text.lower().replace("-", " ").split()
    return " ".join(word for word in words if word not in {"the", "branch", "office"})


class AcmeBank:
    """The demo bank's operations; safe to share between threads."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        _create_schema(db_path)

    def verify(self, account_number: str, pin: str) -> str | None:
        """The holder's name when the PIN matches the account, else None."""
        with _reading(self.db_path) as connection:
            row = connection.execute(
                "SELECT holder_name, pin_salt, pin_hash, pin_iterations FROM customers"
                " WHERE account_number = ?",
                (account_number,),
            ).fetchone()
        if row is None:
            # Hash anyway so an unknown account takes as long to refuse as a wrong PIN.
            _hash_pin(pin, b"unknown-account", PIN_HASH_ITERATIONS)
            return None
        holder_name, salt, expected, iterations = row
        return holder_name if hmac.compare_digest(_hash_pin(pin, salt, iterations), expected) else None

    def change_attempts(self, account_key: str, change: Change, now: float) -> AccountAttempts:
        """Where every call's identification attempts are counted (an ``AttemptStore``): in this
        database, so a lockout outlasts a restart; the write lock makes each change atomic."""
        with _writing(self.db_path) as connection:
            connection.execute("DELETE FROM identification_attempts WHERE forget_after < ?", (now,))
            row = connection.execute(
                "SELECT attempts, locked_until, forget_after FROM identification_attempts"
                " WHERE account_key = ?",
                (account_key,),
            ).fetchone()
            record = (
                AccountAttempts() if row is None else AccountAttempts(tuple(json.loads(row[0])), *row[1:])
            )
            record = change(record)
            if record.forget_after > now:
                connection.execute(
                    "INSERT OR REPLACE INTO identification_attempts VALUES (?, ?, ?, ?)",
                    (account_key, json.dumps(record.attempts), record.locked_until, record.forget_after),
                )
            else:  # nothing left to remember (a success cleared it)
                connection.execute(
                    "DELETE FROM identification_attempts WHERE account_key = ?", (account_key,)
                )
            return record

    def holder_name(self, account: str) -> str | None:
        """The customer's name; None for an unknown account."""
        with _reading(self.db_path) as connection:
            row = connection.execute(
                "SELECT holder_name FROM customers WHERE account_number = ?", (account,)
            ).fetchone()
        return None if row is None else row[0]

    def account_types(self, account: str) -> list[str]:
        """The customer's accounts, in the order of ACCOUNT_TYPES."""
        with _reading(self.db_path) as connection:
            held = {
                row[0]
                for row in connection.execute(
                    "SELECT account_type FROM balances WHERE account_number = ?", (account,)
                )
            }
        return [account_type for account_type in ACCOUNT_TYPES if account_type in held]

    def cards(self, account: str) -> list[Card]:
        """The customer's cards, in the order of CARD_TYPES."""
        with _reading(self.db_path) as connection:
            rows = connection.execute(
                "SELECT card_type, last4, status FROM cards WHERE account_number = ?", (account,)
            ).fetchall()
        by_type = {row[0]: Card(*row) for row in rows}
        return [by_type[card_type] for card_type in CARD_TYPES if card_type in by_type]

    def balance(self, account: str, account_type: str) -> int:
        """The balance in cents; for credit, the credit still available."""
        with _reading(self.db_path) as connection:
            return self._balance(connection, account, account_type)

    def recent_transactions(self, account: str, limit: int = 3) -> list[Transaction]:
        """Newest first, across all of the customer's accounts."""
        with _reading(self.db_path) as connection:
            rows = connection.execute(
                f"SELECT {_TRANSACTION_COLUMNS} FROM transactions"
                " WHERE account_number = ? ORDER BY posted_on DESC, id DESC LIMIT ?",
                (account, limit),
            ).fetchall()
        return [_transaction(row) for row in rows]

    def latest_charge(self, account: str, amount_cents: int | None = None) -> Transaction | None:
        """The most recent money leaving the account, optionally of exactly `amount_cents`."""
        amount_clause = " AND amount_cents = ?" if amount_cents is not None else ""
        parameters: tuple[Any, ...] = (account, -amount_cents) if amount_cents is not None else (account,)
        with _reading(self.db_path) as connection:
            row = connection.execute(
                f"SELECT {_TRANSACTION_COLUMNS} FROM transactions"
                f" WHERE account_number = ? AND amount_cents < 0{amount_clause}"
                " ORDER BY posted_on DESC, id DESC LIMIT 1",
                parameters,
            ).fetchone()
        return None if row is None else _transaction(row)

    def transfer(self, account: str, from_type: str, to_type: str, amount_cents: int) -> int:
        """Moves money between two of the customer's accounts atomically; returns the source's new balance.

        Raises BusinessRuleError transfer_invalid (non-positive amount, same account, or an account type
        the customer lacks) or transfer_insufficient_funds; nothing changes when it does.
        """
        if amount_cents <= 0 or from_type == to_type:
            raise BusinessRuleError(
                "transfer_invalid", f"cannot transfer {amount_cents} cents from {from_type} to {to_type}"
            )
        with _writing(self.db_path) as connection:
            balances = dict(
                connection.execute(
                    "SELECT account_type, balance_cents FROM balances"
                    " WHERE account_number = ? AND account_type IN (?, ?)",
                    (account, from_type, to_type),
                ).fetchall()
            )
            if len(balances) != 2:
                raise BusinessRuleError(
                    "transfer_invalid", f"account {account} lacks a {from_type} or a {to_type} account"
                )
            source_balance = balances[from_type]
            if source_balance < amount_cents:
                raise BusinessRuleError(
                    "transfer_insufficient_funds",
                    f"{from_type} holds {source_balance} cents, transfer needs {amount_cents}",
                )
            today = date.today().isoformat()
            for account_type, delta, counterparty in (
                (from_type, -amount_cents, f"your {to_type} account"),
                (to_type, amount_cents, f"your {from_type} account"),
            ):
                connection.execute(
                    "UPDATE balances SET balance_cents = balance_cents + ?"
                    " WHERE account_number = ? AND account_type = ?",
                    (delta, account, account_type),
                )
                connection.execute(
                    "INSERT INTO transactions (account_number, account_type, posted_on, description,"
                    " amount_cents) VALUES (?, ?, ?, ?, ?)",
                    (account, account_type, today, counterparty, delta),
                )
            return source_balance - amount_cents

    def block_card(self, account: str, card_type: str) -> str:
        """Blocks the card, orders a replacement and returns its last 4 digits.

        Blocking an already blocked card changes nothing and orders no second replacement.
        Raises BusinessRuleError card_not_found when the customer has no such card.
        """
        with _writing(self.db_path) as connection:
            row = connection.execute(
                "SELECT last4, status FROM cards WHERE account_number = ? AND card_type = ?",
                (account, card_type),
            ).fetchone()
            if row is None:
                raise BusinessRuleError("card_not_found", f"account {account} has no {card_type} card")
            last4, status = row
            if status == "active":
                connection.execute(
                    "UPDATE cards SET status = 'blocked' WHERE account_number = ? AND card_type = ?",
                    (account, card_type),
                )
                self._insert_request(
                    connection, account, "card_replacement", {"card_type": card_type, "last4": last4}
                )
            return last4

    def branch(self, name_or_area: str | None) -> Branch | None:
        """The branch whose name or area matches best; the main branch for None or blank input."""
        with _reading(self.db_path) as connection:
            branches = connection.execute("SELECT id, name, area, address, is_main FROM branches").fetchall()
            query = _normalise_place(name_or_area or "")
            chosen = self._match_branch(branches, query)
            if chosen is None:
                return None
            hours = connection.execute(
                "SELECT weekday, opens, closes FROM branch_hours WHERE branch_id = ? ORDER BY weekday",
                (chosen["id"],),
            ).fetchall()
        return Branch(
            chosen["name"],
            chosen["area"],
            chosen["address"],
            tuple(
                (weekday, time.fromisoformat(opens), time.fromisoformat(closes))
                for weekday, opens, closes in hours
            ),
        )

    def record_request(self, account: str, kind: str, details: dict[str, Any]) -> str:
        """Files a service request (contact update, dispute, ...) for staff; returns its reference."""
        with _writing(self.db_path) as connection:
            return self._insert_request(connection, account, kind, details)

    def service_requests(self, account: str) -> list[ServiceRequest]:
        """The customer's requests, oldest first, e.g. for an agent taking over the call."""
        with _reading(self.db_path) as connection:
            rows = connection.execute(
                "SELECT id, kind, details, created_on FROM service_requests"
                " WHERE account_number = ? ORDER BY id",
                (account,),
            ).fetchall()
        return [
            ServiceRequest(
                str(_FIRST_REQUEST_REFERENCE + id_), kind, json.loads(details), date.fromisoformat(day)
            )
            for id_, kind, details, day in rows
        ]

    @staticmethod
    def _balance(connection: sqlite3.Connection, account: str, account_type: str) -> int:
        row = connection.execute(
            "SELECT balance_cents FROM balances WHERE account_number = ? AND account_type = ?",
            (account, account_type),
        ).fetchone()
        if row is None:
            raise BusinessRuleError("account_not_found", f"account {account} has no {account_type} account")
        return row[0]

    @staticmethod
    def _insert_request(
        connection: sqlite3.Connection, account: str, kind: str, details: dict[str, Any]
    ) -> str:
        cursor = connection.execute(
            "INSERT INTO service_requests (account_number, kind, details, created_on) VALUES (?, ?, ?, ?)",
            (account, kind, json.dumps(details, sort_keys=True), date.today().isoformat()),
        )
        assert cursor.lastrowid is not None
        return str(_FIRST_REQUEST_REFERENCE + cursor.lastrowid)

    @staticmethod
    def _match_branch(branches: list[sqlite3.Row], query: str) -> sqlite3.Row | None:
        if not query:
            return next((row for row in branches if row["is_main"]), None)
        by_label = {_normalise_place(row[column]): row for row in branches for column in ("name", "area")}
        if query in by_label:
            return by_label[query]
        # Callers say "downtown" for "Downtown Springfield" and ASR mangles names, so accept
        # containment either way, then near spellings.
        contained = [row for label, row in by_label.items() if query in label or label in query]
        if contained:
            return contained[0]
        close = difflib.get_close_matches(query, list(by_label), n=1, cutoff=0.75)
        return by_label[close[0]] if close else None


# Deterministic demo data. Ids are fixed so re-seeding an existing database inserts nothing twice.
_CUSTOMERS = (
    ("12345678", "Jane Doe", "+1 555 010 2233", "jane.doe@example.com", "4321"),
    ("87654321", "John Smith", "+1 555 010 9876", "john.smith@example.com", "1111"),
    ("24681357", "Maria Garcia", "+1 555 010 5566", "maria.garcia@example.com", "9753"),
)
_BALANCES = (
    ("12345678", "checking", 254_075),
    ("12345678", "savings", 1_200_000),
    ("12345678", "credit", 350_000),
    ("87654321", "checking", 8_950),
    ("87654321", "savings", 50_000),
    ("24681357", "checking", 732_010),
    ("24681357", "savings", 15_000),
    ("24681357", "credit", 120_000),
)
_TRANSACTIONS = (
    (1, "12345678", "checking", "2024-10-25", "Acme Payroll", 310_000),
    (2, "12345678", "checking", "2024-10-26", "City Power and Light", -8_945),
    (3, "12345678", "credit", "2024-10-27", "Fuel Stop", -4_210),
    (4, "12345678", "checking", "2024-10-28", "Grocery Mart", -6_732),
    (5, "12345678", "savings", "2024-10-29", "Acme Bank interest", 4_125),
    (6, "12345678", "credit", "2024-10-30", "Streamflix", -1_599),
    (7, "12345678", "checking", "2024-10-31", "Riverside Rent", -145_000),
    (8, "12345678", "checking", "2024-11-01", "Corner Cafe", -475),
    (9, "12345678", "credit", "2024-11-02", "Book Nook", -2_399),
    (10, "12345678", "checking", "2024-11-03", "Grocery Mart", -4_520),
    (11, "87654321", "checking", "2024-10-25", "Harbor Tools Payroll", 185_000),
    (12, "87654321", "checking", "2024-10-26", "Phone Company", -5_500),
    (13, "87654321", "checking", "2024-10-27", "Grocery Mart", -3_218),
    (14, "87654321", "savings", "2024-10-28", "Acme Bank interest", 175),
    (15, "87654321", "checking", "2024-10-29", "Pizza Place", -2_150),
    (16, "87654321", "checking", "2024-10-30", "Riverside Rent", -120_000),
    (17, "87654321", "checking", "2024-10-31", "Fuel Stop", -3_800),
    (18, "87654321", "checking", "2024-11-01", "Corner Cafe", -390),
    (19, "87654321", "checking", "2024-11-02", "Gym Membership", -2_999),
    (20, "87654321", "checking", "2024-11-03", "Online Shop", -1_999),
    (21, "24681357", "checking", "2024-10-25", "Garcia Design Studio", 420_000),
    (22, "24681357", "credit", "2024-10-26", "Airline Tickets", -38_900),
    (23, "24681357", "checking", "2024-10-27", "Water Utility", -3_120),
    (24, "24681357", "checking", "2024-10-28", "Grocery Mart", -9_875),
    (25, "24681357", "credit", "2024-10-29", "Hotel Central", -21_400),
    (26, "24681357", "savings", "2024-10-30", "Acme Bank interest", 52),
    (27, "24681357", "checking", "2024-10-31", "Pharmacy Plus", -1_845),
    (28, "24681357", "checking", "2024-11-01", "Corner Cafe", -610),
    (29, "24681357", "credit", "2024-11-02", "Garden Center", -7_425),
    (30, "24681357", "checking", "2024-11-03", "Bookshop", -2_260),
)
_CARDS = (
    ("12345678", "debit", "4821", "active"),
    ("12345678", "credit", "9034", "active"),
    ("87654321", "debit", "1177", "active"),
    ("24681357", "debit", "6502", "active"),
    ("24681357", "credit", "3319", "active"),
)
_BRANCHES = (
    (1, "Main Street", "Downtown Springfield", "100 Main Street, Springfield", 1),
    (2, "Riverside", "Riverside", "42 River Road, Riverside", 0),
    (3, "Oak Park", "Oak Park", "7 Elm Avenue, Oak Park", 0),
)
_WEEKDAYS = range(5)
_BRANCH_HOURS = (
    *((1, day, "09:00", "17:00") for day in _WEEKDAYS),
    (1, 5, "09:00", "13:00"),
    *((2, day, "08:30", "16:30") for day in _WEEKDAYS),
    *((3, day, "10:00", "18:00") for day in _WEEKDAYS),
    (3, 5, "10:00", "14:00"),
)


def seed(db_path: Path, reset: bool = False) -> None:
    """Creates the demo data; existing rows are kept unless `reset`, which restores the original state."""
    _create_schema(db_path)
    with _writing(db_path) as connection:
        if reset:
            for table in _TABLES:
                connection.execute(f"DELETE FROM {table}")
            connection.execute("DELETE FROM sqlite_sequence")  # restart request references and ids
        known = {row[0] for row in connection.execute("SELECT account_number FROM customers")}
        for account_number, name, phone, email, pin in _CUSTOMERS:
            if account_number in known:
                continue  # skip the deliberately slow hashing for customers already there
            salt = os.urandom(16)
            connection.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    account_number,
                    name,
                    phone,
                    email,
                    salt,
                    _hash_pin(pin, salt, PIN_HASH_ITERATIONS),
                    PIN_HASH_ITERATIONS,
                ),
            )
        connection.executemany("INSERT OR IGNORE INTO balances VALUES (?, ?, ?)", _BALANCES)
        connection.executemany(
            "INSERT OR IGNORE INTO transactions (id, account_number, account_type, posted_on, description,"
            " amount_cents) VALUES (?, ?, ?, ?, ?, ?)",
            _TRANSACTIONS,
        )
        connection.executemany("INSERT OR IGNORE INTO cards VALUES (?, ?, ?, ?)", _CARDS)
        connection.executemany("INSERT OR IGNORE INTO branches VALUES (?, ?, ?, ?, ?)", _BRANCHES)
        connection.executemany("INSERT OR IGNORE INTO branch_hours VALUES (?, ?, ?, ?)", _BRANCH_HOURS)
