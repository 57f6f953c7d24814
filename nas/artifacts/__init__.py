"""Files the platform writes and reads back: exported subnets and the safe-file rules."""
