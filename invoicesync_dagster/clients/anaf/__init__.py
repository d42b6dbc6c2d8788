"""ANAF clients: OAuth2 (`oauth`) and e-Factura (`efactura`)."""
