"""e-Factura: exchange rates, billable events, documents and their checks."""
