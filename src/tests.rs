use pgrx::prelude::*;

#[pg_test]
fn placeholder_user_id_is_null_without_session() {
    assert_eq!(Spi::get_one::<String>("SELECT auth.user_id()").unwrap(), None);
}
