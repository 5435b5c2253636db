"""Tests of hybridmem.world (a package so that test basenames may repeat those elsewhere in tests/)."""
