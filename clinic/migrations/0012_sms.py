"""SMS beside email: the channel of each outbox row and what the gateway said of it, the channel
each patient chose, the day's SMS figures, and the numbers that replied STOP.

Frozen copies of the models as they were, independent of clinic/models.py by design.
"""
from peewee import *  # noqa: F403


def up(migrator, db):
    class SmsOptOut(Model):
        phone = CharField(max_length=40, unique=True)
        keyword = CharField(max_length=20, default='STOP')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'sms_opt_out'

    migrator.migrate(
        migrator.add_column('message', 'channel', CharField(max_length=5, default='email')),
        migrator.add_column('message', 'segments', IntegerField(default=0)),
        migrator.add_column('message', 'gateway_id', CharField(max_length=64, default='')),
        migrator.add_column('message', 'delivery', CharField(max_length=12, default='')),
        migrator.add_column('message', 'price', CharField(max_length=20, default='')),
        migrator.add_column('message', 'price_unit', CharField(max_length=3, default='')),
        migrator.add_index('message', ('gateway_id',), False),
        migrator.add_column('patient', 'channel', CharField(max_length=5, default='email')),
        migrator.add_column('daily_stat', 'sms_sent', IntegerField(default=0)),
        migrator.add_column('daily_stat', 'sms_failed', IntegerField(default=0)),
    )
    db.create_tables([SmsOptOut])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('sms_opt_out'))
    migrator.migrate(
        migrator.drop_column('daily_stat', 'sms_failed'),
        migrator.drop_column('daily_stat', 'sms_sent'),
        migrator.drop_column('patient', 'channel'),
        migrator.drop_index('message', 'message_gateway_id'),
        migrator.drop_column('message', 'price_unit'),
        migrator.drop_column('message', 'price'),
        migrator.drop_column('message', 'delivery'),
        migrator.drop_column('message', 'gateway_id'),
        migrator.drop_column('message', 'segments'),
        migrator.drop_column('message', 'channel'),
    )
