"""The front desk: a patient registered at the counter may have no email address, so the
user's email may be NULL (the unique index still holds for every address that is given). The
role ``desk`` and the status ``arrived`` need no schema change.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    migrator.migrate(migrator.drop_not_null('user', 'email'))


def down(migrator, db):
    migrator.migrate(migrator.add_not_null('user', 'email'))
