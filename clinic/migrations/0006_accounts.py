"""Accounts people look after themselves: emailed one-time links (password reset, a new email's
confirmation), authenticators for two-factor sign-in and their recovery codes.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = 'user'

    class AccountToken(Model):
        user = ForeignKeyField(User, on_delete='CASCADE')
        purpose = CharField(max_length=10)
        token_hash = CharField(max_length=64, unique=True)
        new_email = CharField(max_length=254, default='')
        created_at = DateTimeField()
        expires_at = DateTimeField()
        used_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'account_token'

    class Totp(Model):
        user = ForeignKeyField(User, primary_key=True, on_delete='CASCADE')
        secret = CharField(max_length=64)
        enabled_at = DateTimeField(null=True)
        last_step = IntegerField(default=0)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'totp'

    class RecoveryCode(Model):
        user = ForeignKeyField(User, on_delete='CASCADE')
        code_hash = CharField(max_length=64, unique=True)
        used_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'recovery_code'

    db.create_tables([AccountToken, Totp, RecoveryCode])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('recovery_code'))
    migrator.migrate(migrator.drop_table('totp'))
    migrator.migrate(migrator.drop_table('account_token'))
