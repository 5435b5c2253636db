from hybridmem.train.logging import TrainingLogger, read_metrics


def test_csv_rows_and_resume_truncation(tmp_path):
    logger = TrainingLogger(tmp_path, total_steps=4, progress=False)
    for step in (1, 2, 3, 4):
        logger.log(step, {"loss": step * 0.5})
    logger.log(4, {"val_loss": 9.0})
    logger.close()
    assert [row[2] for row in read_metrics(tmp_path, "loss")] == [0.5, 1.0, 1.5, 2.0]
    assert read_metrics(tmp_path, "val_loss") == [(4, "val_loss", 9.0)]
    assert (tmp_path / "tensorboard").is_dir()

    resumed = TrainingLogger(tmp_path, total_steps=4, start_step=2, progress=False, tensorboard=False)
    resumed.log(3, {"loss": 7.0})
    resumed.close()
    assert [row[2] for row in read_metrics(tmp_path, "loss")] == [0.5, 1.0, 7.0]


def test_disabled_logger_writes_nothing(tmp_path):
    logger = TrainingLogger(tmp_path / "run", total_steps=2, enabled=False)
    logger.log(1, {"loss": 1.0})
    logger.advance(1, 1.0)
    logger.close()
    assert not (tmp_path / "run").exists()
