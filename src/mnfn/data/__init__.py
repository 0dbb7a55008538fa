"""Data: image sets (``images``), CNN model zoos (``zoo``) and SIREN INR sets (``inr``)."""
