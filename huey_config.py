"""Creates the clinic's Huey object; nothing else. Its storage is set from CLINIC_QUEUE_URL by
clinic.queue.configure() at start. Tasks live in clinic/tasks.py."""

from clinic.queue import create_huey

huey = create_huey()
