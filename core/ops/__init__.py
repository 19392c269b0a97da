"""Operations: attribution reports, reconciliation, forecasts, anomalies and call chains."""
