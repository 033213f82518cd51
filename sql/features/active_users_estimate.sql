-- An estimate of the number of users with an event before a time: the size of the built-in
-- `all_users` segment then.
--
-- Grain: one row.
-- Inputs: events.
-- Parameters: $as_of: UTC timestamp.
--
-- Columns: users, the HyperLogLog estimate of the distinct user ids, within about 2% of the
-- exact count. It costs one scan and no hash table of every user, where the exact count needs
-- both; goal creation only needs it to size the training sample.

select approx_distinct(user_id) as users
from events
where event_time < cast($as_of as timestamp)
    and event_date <= cast(cast($as_of as timestamp) as date)
    and user_id is not null
