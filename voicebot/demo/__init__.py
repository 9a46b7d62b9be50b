"""The "Acme Bank" demo: a small SQLite banking backend and the flow actions that use it.

An actions plugin (the default ``plugins: [voicebot.demo]`` in voicebot.yml, also the entry point
``demo`` of the ``voicebot.actions`` group): the engines load it by name and know nothing of the bank.
"""

from __future__ import annotations

from pathlib import Path

from voicebot.config import Config
from voicebot.demo.actions import register_bank_actions
from voicebot.demo.bank import AcmeBank, seed
from voicebot.demo.customer import customer_view
from voicebot.dialogue.actions import ActionRegistry


def database_path(config: Config) -> Path:
    return config.path(config.data_dir) / "acme_bank.sqlite"


def register(registry: ActionRegistry, config: Config) -> None:
    """Seeds the bank's database (idempotent: fills a new one, leaves an existing one alone) and
    registers the bank's actions and its customer panel for agents."""
    db_path = database_path(config)
    seed(db_path)
    bank = AcmeBank(db_path)
    register_bank_actions(registry, bank)
    registry.customer_view = customer_view(bank)
