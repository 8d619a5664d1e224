"""Operations tooling that ships with the application: backups, restores, restore drills."""
