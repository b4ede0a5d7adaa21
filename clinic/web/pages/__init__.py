"""HTML pages, one module per area: account (sign-in, registration), patient, doctor, admin."""
