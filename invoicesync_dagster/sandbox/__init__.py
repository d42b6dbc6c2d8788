"""Local fake servers (Stripe today; ANAF, SmartBill and BNR later) and the data seeder."""
