"""Boot integration: the GRUB configuration written from ostree's BLS entries."""
