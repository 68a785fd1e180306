"""The bottom layer: atomic writes, progress bars, measurement, paths and provenance.
Every layer may import it; it imports no other part of linrepro."""
