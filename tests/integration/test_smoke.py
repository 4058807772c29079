from archiver import migration
from archiver.engine import Archiver
from local import demo


def test_seeded_rows_are_all_accounted_for_after_a_run(db, policy, settings):
    demo.seed(db, policy, 2000)
    migration.migrate(db, policy)
    before = db.scalar("SELECT count(*) FROM nic_cc_customer")
    archiver = Archiver(db, policy, settings)
    job = archiver.start()
    outcome = archiver.run_hop(job.id, owner="w1", hop=1)
    assert outcome.status == "done"
    live = db.scalar("SELECT count(*) FROM nic_cc_customer")
    archived = db.scalar("SELECT count(*) FROM nic_cc_customer_backup")
    assert live + archived == before
    assert outcome.job.records_archived == archived > 0
