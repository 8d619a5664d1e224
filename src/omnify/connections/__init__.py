"""Platform connections of clients: OAuth authorization, account selection, health and disconnect."""
