"""configure"""
