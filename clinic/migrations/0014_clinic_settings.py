"""The clinic's details as the admin saves them on the Clinic page (name, address, phone, time
zone, website), one row, so they change without a restart.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = 'user'

    class ClinicSettings(Model):
        name = CharField(max_length=200, default='')
        address = CharField(max_length=300, default='')
        phone = CharField(max_length=20, default='')
        timezone = CharField(max_length=64, default='')
        website = CharField(max_length=300, default='')
        timezone_confirmed = BooleanField(default=False)
        updated_at = DateTimeField(null=True)
        updated_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        class Meta:
            database = db
            table_name = 'clinic_settings'

    db.create_tables([ClinicSettings])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('clinic_settings'))
