-- Example segment: users whose profile city is San Francisco.
--
-- Grain: one row per user_id.
-- Inputs: profiles (with a `city` column, as `goalcast generate` writes).

with

profiles as (
    select * from profiles
),

san_francisco as (
    select user_id
    from profiles
    where city = 'San Francisco'
)

select * from san_francisco
