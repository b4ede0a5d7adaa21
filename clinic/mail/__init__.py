"""Messages to patients and staff: composing them, the outbox that keeps them, and sending."""
