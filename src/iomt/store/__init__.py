"""iomt.store"""
