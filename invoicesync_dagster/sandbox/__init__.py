"""Local fake servers (Stripe, ANAF registry, OAuth and e-Factura, SmartBill, BNR) and the data
seeder."""
