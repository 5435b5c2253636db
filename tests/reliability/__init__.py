"""Fault injection: kills, concurrent writers and malformed inputs (a package so basenames may repeat)."""
