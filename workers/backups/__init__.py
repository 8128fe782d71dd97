"""`backup.create` and `backup.restore`: encrypted, chained backups of a user's product data."""
