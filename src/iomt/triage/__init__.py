"""iomt.triage"""
