"""iomt.vision"""
