"""A person's language: their pages and every message they get (clinic/i18n.py)."""
from peewee import *  # noqa: F403


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('user', 'language', CharField(max_length=10, default='')),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column('user', 'language'))
