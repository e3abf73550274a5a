"""iomt.ingest"""
