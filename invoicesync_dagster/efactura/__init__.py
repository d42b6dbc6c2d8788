"""Pure e-Factura domain: no I/O, no Dagster. Stripe records in, invoice model and XML out."""
